// The client against a real `outpost serve` (see node.mjs).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { OutpostClient, OutpostError } from '../dist/index.js';
import { startNode, psql, until } from './node.mjs';

let node;
let client;

before(async () => {
  node = await startNode();
  client = new OutpostClient({ url: node.url, token: node.token });
});
after(async () => {
  await client.setMode('auto').catch(() => {});
  await node?.stop();
});

test('status has the seed fields and outpost fields', async () => {
  const s = await client.status();
  assert.equal(s.isOnline, true);
  assert.equal(s.localDbConnected, true);
  assert.equal(s.remoteDbConnected, true);
  assert.match(s.timestamp, /^\d{4}-\d\d-\d\dT/);
  assert.equal(s.mode, 'auto');
  assert.equal(s.usingLocalDatabase, false);
  assert.equal(typeof s.pendingChanges, 'number');
});

test('a sync answers in the seed shape', async () => {
  const report = await client.sync('BIDIRECTIONAL');
  assert.equal(report.success, true);
  assert.equal(typeof report.results.User.recordsProcessed, 'number');
  assert.deepEqual(report.errors, {});
  const only = await client.sync('FROM_SERVER', ['Post']);
  assert.deepEqual(Object.keys(only.results), ['Post']);
});

test('findMany with include, as the seed PostList calls it', async () => {
  const posts = await client.model('Post').findMany({ include: { user: true }, orderBy: { id: 'asc' } });
  assert.equal(posts.length >= 2, true);
  const p1 = posts.find((p) => p.id === 'p1');
  assert.equal(p1.title, 'Hello');
  assert.equal(p1.user.email, 'ada@example.com');
  assert.equal(await client.model('User').count(), 2);
  const u = await client.model('User').findUnique({ where: { id: 'u2' } });
  assert.equal(u.name, 'Bob');
});

test('create takes the seed shorthand and Prisma args; the server has the rows', async () => {
  const posts = client.model('Post');
  const a = await posts.create({ id: 'c1', title: 'shorthand', userId: 'u1' });
  assert.equal(a.title, 'shorthand');
  const b = await posts.create({ data: { id: 'c2', title: 'args', userId: 'u2' }, include: { user: true } });
  assert.equal(b.user.name, 'Bob');
  assert.equal(psql(node.db, `SELECT string_agg(title, ',' ORDER BY id) FROM "Post" WHERE id IN ('c1','c2')`), 'shorthand,args');
  const updated = await posts.update({ where: { id: 'c1' }, data: { views: 5 } });
  assert.equal(updated.views, 5);
  assert.deepEqual(await posts.deleteMany({ where: { id: { in: ['c1', 'c2'] } } }), { count: 2 });
});

test('bad input is an OutpostError naming the problem', async () => {
  await assert.rejects(client.model('Nope').findMany(), (e) => {
    assert.ok(e instanceof OutpostError);
    assert.equal(e.status, 404);
    assert.equal(e.code, 'unknown_model');
    assert.match(e.message, /Nope/);
    return true;
  });
  await assert.rejects(client.model('Post').findMany({ where: { nope: 1 } }), (e) => {
    assert.equal(e.status, 400);
    assert.match(e.message, /nope/);
    return true;
  });
  const anonymous = new OutpostClient({ url: node.url });
  await assert.rejects(anonymous.status(), (e) => e.status === 401);
  const nowhere = new OutpostClient({ url: 'http://127.0.0.1:9' });
  await assert.rejects(nowhere.status(), (e) => e.code === 'network' && e.status === 0);
});

test('local mode: writes are pending with syncStatus, a sync pushes them', async () => {
  await client.setMode('local');
  try {
    const rec = await client.model('Post').create({ data: { id: 'l1', title: 'offline', userId: 'u1' } });
    assert.equal(rec.syncStatus, 'PENDING');
    const pending = await client.pending({ model: 'Post' });
    assert.equal(pending.total, 1);
    assert.equal(pending.changes[0].operation, 'insert');
    assert.deepEqual(pending.changes[0].key, ['l1']);
    assert.equal(psql(node.db, `SELECT count(*) FROM "Post" WHERE id = 'l1'`), '0');
    const report = await client.sync('TO_SERVER');
    assert.equal(report.success, true);
    assert.equal((await client.status()).pendingChanges, 0);
    assert.equal(psql(node.db, `SELECT title FROM "Post" WHERE id = 'l1'`), 'offline');
    const log = await client.log({ model: 'Post', limit: 1 });
    assert.equal(log.entries[0].model, 'Post');
    assert.equal(log.limit, 1);
  } finally {
    await client.setMode('auto');
  }
});

test('a conflict is listed and resolved', async () => {
  await client.sync('BIDIRECTIONAL');
  await client.setMode('local');
  try {
    await client.model('Post').update({ where: { id: 'p2' }, data: { title: 'local edit' } });
    // Another writer on the server, not through this node.
    psql(node.db, `UPDATE "Post" SET title = 'server edit' WHERE id = 'p2'`);
    await client.sync('BIDIRECTIONAL');
    const conflicts = await until(async () => {
      const c = await client.conflicts();
      return c.length > 0 && c;
    }, 10_000, 'the conflict');
    assert.equal(conflicts[0].model, 'Post');
    assert.equal(conflicts[0].local.title, 'local edit');
    assert.equal(conflicts[0].server.title, 'server edit');
    const one = await client.conflict('Post', 'p2');
    assert.equal(one.base.title, 'World');
    await client.resolve('Post', 'p2', 'server');
    assert.deepEqual(await client.conflicts(), []);
    const rec = await client.model('Post').findUnique({ where: { id: 'p2' } });
    assert.equal(rec.title, 'server edit');
    await assert.rejects(client.resolve('Post', 'p2', 'local'), (e) => e.code === 'no_conflict');
  } finally {
    await client.setMode('auto');
  }
});

test('models, failed rows and the OpenAPI document', async () => {
  const models = await client.models();
  assert.deepEqual(models.map((m) => m.model).sort(), ['Post', 'User']);
  const failed = await client.failed();
  assert.deepEqual(failed.failed, []);
  await assert.rejects(client.retry('Post', 'p1'), (e) => e.code === 'no_failed_row');
  const doc = await client.openapi();
  assert.match(String(doc.openapi), /^3\./);
});

test('live events: status first, then writes and server changes', async () => {
  const events = [];
  let opened = false;
  const sub = client.subscribe((e) => events.push(e), { onOpen: () => (opened = true) });
  try {
    await until(() => events.some((e) => e.type === 'status'), 5000, 'the first status event');
    assert.equal(opened, true);
    assert.equal(events[0].type, 'status');
    assert.equal(events[0].data.isOnline, true);

    await client.model('User').create({ data: { id: 'u9', email: 'e@example.com' } });
    await until(
      () => events.some((e) => e.type === 'changed' && e.data.source === 'write' && e.data.models.includes('User')),
      5000,
      'a changed event for the write',
    );

    // A change made on the server by someone else arrives by itself: the
    // node's monitor pulls it and the stream says so.
    psql(node.db, `INSERT INTO "Post" (id, title, "userId") VALUES ('s1', 'from elsewhere', 'u2')`);
    await until(
      () => events.some((e) => e.type === 'changed' && e.data.source === 'sync' && e.data.models.includes('Post')),
      10_000,
      'a changed event from the pull',
    );
    assert.ok(events.some((e) => e.type === 'sync' && e.data.entries.some((x) => x.model === 'Post')));
  } finally {
    sub.close();
  }
});
