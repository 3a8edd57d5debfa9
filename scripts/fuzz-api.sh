#!/usr/bin/env bash
# Fuzzes the HTTP API against its own OpenAPI document with schemathesis
# (PyPI): a sample database, `outpost setup`, `outpost serve` with a token,
# then `st run` (all but the endless event stream, tested in
# crates/outpost-http/tests/web.rs). Fails on any 5xx, on a response that does not match the
# document, or on a request the document calls invalid being accepted.
#
#   scripts/fuzz-api.sh                 # CI size
#   FUZZ_EXAMPLES=2000 scripts/fuzz-api.sh   # a longer run
#
# Needs PostgreSQL on $FUZZ_PG (default 127.0.0.1:5432, user postgres) and a
# built `outpost` binary ($OUTPOST_BIN, default target/debug/outpost).
set -euo pipefail
cd "$(dirname "$0")/.."

PG_HOST=${FUZZ_PG_HOST:-127.0.0.1}
PG_PORT=${FUZZ_PG_PORT:-5432}
BIN=${OUTPOST_BIN:-target/debug/outpost}
EXAMPLES=${FUZZ_EXAMPLES:-100}
# Every check but positive_data_acceptance: the document cannot say which
# keys a model's key column takes or which Prisma arguments an operation
# needs, so a schema-valid request may still be refused (with a 4xx naming
# the problem, which the other checks hold to the document).
CHECKS=${FUZZ_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,missing_required_header,unsupported_method,ignored_auth,use_after_free,ensure_resource_availability}
DB="outpost_fuzz_$$"
TOKEN="fuzz-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE="postgres://postgres@$PG_HOST:$PG_PORT"

if ! command -v st >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check schemathesis
fi
[ -x "$BIN" ] || cargo build --locked -p outpost

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

# trust auth ignores the password; it is here to show it never leaks.
SECRET="pw-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export DATABASE_URL="postgres://postgres:$SECRET@$PG_HOST:$PG_PORT/$DB"
export LOCAL_DATABASE_URL="file:$WORK/local.db"
export OUTPOST_ADMIN_TOKEN="$TOKEN"
"$BIN" setup >/dev/null
"$BIN" serve --port "$PORT" >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 1 50); do
  curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/database/status" >/dev/null && break
  sleep 0.2
done

before=$(psql "$BASE/$DB" -Atc 'SELECT count(*) FROM outpost.changes')
st run "http://127.0.0.1:$PORT/api/openapi.json" \
  --header "Authorization: Bearer $TOKEN" \
  --checks "$CHECKS" \
  --max-examples "$EXAMPLES" \
  --workers 1 \
  --seed "${FUZZ_SEED:-1}" \
  --exclude-path /api/database/events \
  --report har --report-har-path "$WORK/run.har" \
  "$@"
echo "fuzz-api: server changes recorded during the run: $(( $(psql "$BASE/$DB" -Atc 'SELECT count(*) FROM outpost.changes') - before ))"
if grep -q "$SECRET" "$WORK/run.har"; then
  echo "fuzz-api: the server's password appears in a response" >&2
  exit 1
fi
if grep -q "$SECRET" "$WORK/serve.log"; then
  echo "fuzz-api: the server's password appears in the serve log" >&2
  exit 1
fi
