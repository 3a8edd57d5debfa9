#!/usr/bin/env bash
# Cross-checks outpost's Prisma schema parser against Prisma's own schema
# engine: regenerates the DMMF digest of every schema in
# scripts/prisma-check/corpus with `@prisma/prisma-schema-wasm` (installed by
# `npm ci` from the committed package-lock.json) and compares it with the
# committed scripts/prisma-check/expected.json, which the Rust test
# crates/outpost-core/tests/prisma_dmmf.rs compares outpost's parse with.
#   --update   rewrite expected.json instead (after adding a schema)
set -euo pipefail
cd "$(dirname "$0")/prisma-check"
if [ ! -d node_modules/@prisma/prisma-schema-wasm ]; then
  npm ci --no-audit --no-fund
fi
fresh="$(mktemp)"
trap 'rm -f "$fresh"' EXIT
node dmmf.mjs corpus > "$fresh"
if [ "${1:-}" = "--update" ]; then
  cp "$fresh" expected.json
  echo "check-prisma: expected.json rewritten"
  exit 0
fi
if ! diff -u expected.json "$fresh"; then
  echo "check-prisma: expected.json is not what Prisma's schema engine reads from the corpus (run scripts/check-prisma.sh --update and re-run the Rust test)" >&2
  exit 1
fi
echo "check-prisma: the corpus's DMMF matches expected.json"
