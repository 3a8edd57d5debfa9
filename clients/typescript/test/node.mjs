// Test helper: a fresh PostgreSQL database with the seed's User and Post
// tables, `outpost setup`, and a real `outpost serve` on a free port, with
// an admin token. Stopped and dropped again by `stop()`.
//
// Needs PostgreSQL on $PGHOST:$PGPORT (default 127.0.0.1:5432, user
// postgres, trust auth) and a built binary ($OUTPOST_BIN, default
// ../../target/debug/outpost).

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

const here = dirname(fileURLToPath(import.meta.url));
export const BIN = process.env.OUTPOST_BIN ?? resolve(here, '../../../target/debug/outpost');
const PG_HOST = process.env.PGHOST ?? '127.0.0.1';
const PG_PORT = process.env.PGPORT ?? '5432';

export function psql(db, sql) {
  return execFileSync('psql', ['-h', PG_HOST, '-p', PG_PORT, '-U', 'postgres', '-d', db, '-v', 'ON_ERROR_STOP=1', '-Atqc', sql], {
    encoding: 'utf8',
  }).trim();
}

const SCHEMA = `
CREATE TABLE "User" (
  id text PRIMARY KEY,
  email text UNIQUE NOT NULL,
  name text
);
CREATE TABLE "Post" (
  id text PRIMARY KEY,
  title text NOT NULL,
  content text,
  published boolean NOT NULL DEFAULT false,
  views integer NOT NULL DEFAULT 0,
  "userId" text REFERENCES "User"(id),
  "createdAt" timestamptz NOT NULL DEFAULT now()
);
INSERT INTO "User" (id, email, name) VALUES ('u1', 'ada@example.com', 'Ada'), ('u2', 'bob@example.com', 'Bob');
INSERT INTO "Post" (id, title, "userId") VALUES ('p1', 'Hello', 'u1'), ('p2', 'World', 'u2');
`;

/** Starts a node; resolves to `{ url, token, db, stop }`. */
export async function startNode({ corsOrigins } = {}) {
  const db = `outpost_ts_${process.pid}_${randomBytes(4).toString('hex')}`;
  psql('postgres', `CREATE DATABASE ${db}`);
  const work = mkdtempSync(join(tmpdir(), 'outpost-ts-'));
  const token = `tok-${randomBytes(16).toString('hex')}`;
  const env = {
    ...process.env,
    DATABASE_URL: `postgres://postgres@${PG_HOST}:${PG_PORT}/${db}`,
    LOCAL_DATABASE_URL: `file:${join(work, 'local.db')}`,
    OUTPOST_ADMIN_TOKEN: token,
    RUST_LOG: 'warn',
  };
  if (corsOrigins) env.OUTPOST_CORS_ORIGINS = corsOrigins;
  let child;
  const stop = async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    try {
      psql('postgres', `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    } catch {
      // Already gone.
    }
    rmSync(work, { recursive: true, force: true });
  };
  try {
    psql(db, SCHEMA);
    execFileSync(BIN, ['setup'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    child = spawn(BIN, ['serve', '--port', '0'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    const url = await new Promise((resolve, reject) => {
      let err = '';
      const timer = setTimeout(() => reject(new Error(`outpost serve did not start: ${err}`)), 30_000);
      child.stderr.on('data', (chunk) => {
        err += chunk;
        const m = /serving on (http:\/\/[^\s]+)/.exec(err);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`outpost serve exited with ${code}: ${err}`));
      });
    });
    // Wait until the monitor has seen the server.
    for (let i = 0; i < 100; i++) {
      const r = await fetch(`${url}/api/database/status`, { headers: { Authorization: `Bearer ${token}` } });
      if (r.ok && (await r.json()).isOnline) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    return { url, token, db, env, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** Resolves when `check()` is truthy; fails after `ms`. */
export async function until(check, ms = 10_000, what = 'condition') {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
