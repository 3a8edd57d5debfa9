// Prints, for every `*.prisma` file in a directory, what Prisma's own schema
// engine (`@prisma/prisma-schema-wasm`, `get_dmmf`) reads from it: models,
// fields, mappings, relations, defaults and enums, in the digest form
// outpost's parser test compares against (crates/outpost-core/tests/prisma_dmmf.rs).
//
//   node dmmf.mjs corpus > expected.json
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const wasm = require('@prisma/prisma-schema-wasm');

const dir = process.argv[2] ?? 'corpus';

function defaultText(d) {
  if (d === undefined || d === null) return null;
  if (Array.isArray(d)) return `[${d.map((x) => String(x)).join(', ')}]`;
  if (typeof d === 'object' && 'name' in d) return `${d.name}(${(d.args ?? []).map(String).join(', ')})`;
  return String(d);
}

function digest(dmmf) {
  const dm = dmmf.datamodel;
  return {
    models: dm.models.map((m) => ({
      name: m.name,
      dbName: m.dbName ?? null,
      primaryKey: m.primaryKey ? m.primaryKey.fields : m.fields.filter((f) => f.isId).map((f) => f.name),
      uniques: m.uniqueFields,
      fields: m.fields.map((f) => ({
        name: f.name,
        dbName: f.dbName ?? null,
        kind: f.kind,
        type: f.type,
        isList: f.isList,
        isRequired: f.isRequired,
        isId: f.isId,
        isUnique: f.isUnique,
        isUpdatedAt: f.isUpdatedAt,
        default: defaultText(f.default),
        nativeType: f.nativeType ?? null,
        relationName: f.relationName ?? null,
        relationFromFields: f.relationFromFields ?? null,
        relationToFields: f.relationToFields ?? null,
      })),
    })),
    enums: dm.enums.map((e) => ({
      name: e.name,
      dbName: e.dbName ?? null,
      values: e.values.map((v) => ({ name: v.name, dbName: v.dbName ?? null })),
    })),
  };
}

const out = {};
for (const file of readdirSync(dir).filter((f) => f.endsWith('.prisma')).sort()) {
  const text = readFileSync(join(dir, file), 'utf8');
  out[file] = digest(JSON.parse(wasm.get_dmmf(JSON.stringify({ prismaSchema: [[file, text]] }))));
}
process.stdout.write(JSON.stringify(out, null, 2) + '\n');
