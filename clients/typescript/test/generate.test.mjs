// `outpost generate typescript` against a real node's schema, and a sample
// using the generated types compiled with `tsc --strict` (typed-sample.ts).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BIN, startNode } from './node.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'generated', 'models.ts');
let node;

before(async () => {
  node = await startNode();
});
after(async () => {
  await node?.stop();
  rmSync(join(here, 'generated'), { recursive: true, force: true });
});

test('generated types compile with the client and catch mistakes', () => {
  mkdirSync(dirname(out), { recursive: true });
  execFileSync(BIN, ['generate', 'typescript', '--out', out], { env: node.env });
  const text = readFileSync(out, 'utf8');
  for (const name of ['interface Post ', 'interface PostWhereInput', 'interface PostInclude', 'interface PostCreateInput', 'interface UserSelect']) {
    assert.ok(text.includes(name), `${name} is generated`);
  }
  assert.match(text, /syncStatus\?: SyncStatus;/);
  assert.match(text, /interface Register \{\n    models: Models;/);
  const tsc = resolve(here, '../node_modules/typescript/bin/tsc');
  try {
    execFileSync(process.execPath, [tsc, '-p', join(here, 'tsconfig.json')], { encoding: 'utf8' });
  } catch (e) {
    assert.fail(`tsc --strict failed on the typed sample:\n${e.stdout}${e.stderr}`);
  }
});

test('generate without a replica says how to make one', () => {
  let err = '';
  try {
    execFileSync(BIN, ['generate', 'typescript'], {
      env: { ...node.env, LOCAL_DATABASE_URL: 'file:/nonexistent/dir/x.db' },
      stdio: ['ignore', 'pipe', 'pipe'],
      encoding: 'utf8',
    });
  } catch (e) {
    err = e.stderr;
    assert.notEqual(e.status, 0);
  }
  assert.match(err, /outpost setup/);
});
