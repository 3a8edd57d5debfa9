#!/usr/bin/env bash
# Checks the OpenAPI document a node serves, as a web developer would use it:
#   1. `redocly lint` (recommended rules) on the live document,
#   2. `openapi-typescript` generates the client's types from it,
#   3. scripts/openapi-check/sample.ts (openapi-fetch on those types) is
#      compiled with `tsc --strict`, no casts, and run against the node.
# npm packages: scripts/openapi-check/package-lock.json, installed by `npm ci`.
#
# Needs PostgreSQL on $FUZZ_PG_HOST:$FUZZ_PG_PORT (default 127.0.0.1:5432,
# user postgres) and a built `outpost` ($OUTPOST_BIN, default target/debug/outpost).
set -euo pipefail
cd "$(dirname "$0")/.."

PG_HOST=${FUZZ_PG_HOST:-127.0.0.1}
PG_PORT=${FUZZ_PG_PORT:-5432}
BIN=${OUTPOST_BIN:-$PWD/target/debug/outpost}
DB="outpost_openapi_$$"
TOKEN="openapi-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE="postgres://postgres@$PG_HOST:$PG_PORT"
CHECK=scripts/openapi-check

[ -x "$BIN" ] || cargo build --locked -p outpost
[ -d "$CHECK/node_modules" ] || (cd "$CHECK" && npm ci --no-audit --no-fund)

cleanup() {
  [ -n "${SERVE_PID:-}" ] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null
  psql "$BASE/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

psql "$BASE/postgres" -qc "CREATE DATABASE $DB"
psql "$BASE/$DB" -q -v ON_ERROR_STOP=1 <<'SQL'
CREATE TABLE "User" (
  id serial PRIMARY KEY,
  email text UNIQUE NOT NULL,
  name text,
  "createdAt" timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE "Post" (
  id text PRIMARY KEY,
  title text NOT NULL,
  content text,
  published boolean NOT NULL DEFAULT false,
  views integer NOT NULL DEFAULT 0,
  "userId" integer REFERENCES "User"(id),
  "updatedAt" timestamptz NOT NULL DEFAULT now()
);
INSERT INTO "User" (email, name) VALUES ('ada@example.com', 'Ada'), ('bob@example.com', 'Bob');
INSERT INTO "Post" (id, title, "userId") VALUES ('p1', 'hello', 1), ('p2', 'world', 2);
SQL

export DATABASE_URL="$BASE/$DB"
export LOCAL_DATABASE_URL="file:$WORK/local.db"
export OUTPOST_ADMIN_TOKEN="$TOKEN"
"$BIN" setup >/dev/null
"$BIN" serve --port "$PORT" >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 1 50); do
  curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/database/status" >/dev/null && break
  sleep 0.2
done

mkdir -p "$CHECK/generated"
curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/openapi.json" >"$CHECK/generated/openapi.json"
cd "$CHECK"
echo "check-openapi: redocly lint"
npx --no-install redocly lint --config redocly.yaml generated/openapi.json
echo "check-openapi: openapi-typescript"
npx --no-install openapi-typescript generated/openapi.json -o generated/api.ts
echo "check-openapi: tsc --strict"
npx --no-install tsc -p tsconfig.json
if grep -nE '\bas (unknown|any)\b|<any>|: any\b' sample.ts; then
  echo "check-openapi: the sample must not cast" >&2
  exit 1
fi
OUTPOST_URL="http://127.0.0.1:$PORT" node dist/sample.js
