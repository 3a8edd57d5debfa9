// The React hooks, rendered with @testing-library/react in jsdom, against a
// real `outpost serve` (see node.mjs).

import './dom.mjs';
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, psql, until } from './node.mjs';

const React = await import('react');
const { render, screen, waitFor, fireEvent, cleanup, act } = await import('@testing-library/react');
const { OutpostClient } = await import('../dist/index.js');
const { OutpostProvider, configureOutpost, useDatabase, useModelService, useDatabaseOperation, useModelChanges } =
  await import('../dist/react.js');

const h = React.createElement;
const { useState, useEffect } = React;

let node;
before(async () => {
  node = await startNode();
});
after(async () => {
  await node?.stop();
});
afterEach(() => cleanup());

// The seed's MyComponent, verbatim but for JSX written as createElement.
function MyComponent() {
  const { isOnline, syncAllModels, useLocalDatabase } = useDatabase();
  return h(
    'div',
    null,
    h('p', null, `Status: ${isOnline ? 'Online' : 'Offline'}`),
    h('p', null, `Using: ${useLocalDatabase ? 'Local Database' : 'Remote Database'}`),
    h('button', { onClick: syncAllModels }, 'Sync Now'),
  );
}

// The seed's PostList with its "Component JSX" filled in.
function PostList() {
  const [posts, setPosts] = useState([]);
  const postService = useModelService('Post');

  useEffect(() => {
    const loadPosts = async () => {
      const data = await postService.findMany({
        include: { user: true },
      });
      setPosts(data);
    };

    loadPosts();
  }, []);

  const createPost = async (postData) => {
    const newPost = await postService.create(postData);
    setPosts([...posts, newPost]);
  };

  return h(
    'div',
    null,
    h('ul', null, ...posts.map((p) => h('li', { key: p.id }, `${p.title} by ${p.user?.name ?? '?'}`))),
    h('button', { onClick: () => createPost({ id: 'h1', title: 'Hooked', userId: 'u2' }) }, 'New post'),
  );
}

test('useDatabase: the seed component shows status and syncs (no provider: configureOutpost)', async () => {
  configureOutpost({ url: node.url, token: node.token });
  render(h(MyComponent));
  await screen.findByText('Status: Online');
  screen.getByText('Using: Remote Database');
  fireEvent.click(screen.getByText('Sync Now'));
  // The run is in the node's log afterwards.
  const client = new OutpostClient({ url: node.url, token: node.token });
  await until(async () => (await client.log({ limit: 1 })).entries[0]?.trigger === 'manual', 10_000, 'the manual sync');
});

test('the seed PostList lists posts with their user and creates one', async () => {
  render(h(OutpostProvider, { url: node.url, token: node.token }, h(PostList)));
  await screen.findByText('Hello by Ada');
  screen.getByText('World by Bob');
  fireEvent.click(screen.getByText('New post'));
  await screen.findByText(/^Hooked by/);
  assert.equal(psql(node.db, `SELECT title FROM "Post" WHERE id = 'h1'`), 'Hooked');
});

test('useDatabase follows live events: mode, pending, sync result, conflicts', async () => {
  let db;
  let op;
  function Panel() {
    db = useDatabase();
    op = useDatabaseOperation();
    return h('p', null, `mode=${db.mode} pending=${db.pending} live=${db.live} conflicts=${db.conflicts.length}`);
  }
  render(h(OutpostProvider, { url: node.url, token: node.token }, h(Panel)));
  await screen.findByText('mode=auto pending=0 live=true conflicts=0');

  await act(() => db.setMode('local'));
  await screen.findByText(/mode=local/);
  assert.equal(db.useLocalDatabase, true);

  let rec;
  await act(async () => {
    rec = await op.execute('Post', 'create', { data: { id: 'h2', title: 'tracked', userId: 'u1' } });
  });
  assert.equal(rec.syncStatus, 'PENDING');
  assert.equal(op.syncStatus, 'PENDING');
  assert.equal(op.error, null);
  await screen.findByText(/pending=1 /);

  // A conflict: the server changes the row this node edited.
  await act(() => op.execute('Post', 'update', { where: { id: 'p1' }, data: { title: 'mine' } }));
  psql(node.db, `UPDATE "Post" SET title = 'theirs' WHERE id = 'p1'`);
  let report;
  await act(async () => {
    report = await db.sync('BIDIRECTIONAL');
  });
  assert.equal(report.success, true);
  await waitFor(() => assert.equal(db.lastSyncResult?.success, true));
  await screen.findByText(/conflicts=1/, {}, { timeout: 10_000 });
  assert.equal(db.conflicts[0].local.title, 'mine');
  await act(() => db.resolve('Post', 'p1', 'local'));
  await screen.findByText(/pending=1 .*conflicts=0/, {}, { timeout: 10_000 });
  await act(() => db.syncAllModels());
  await screen.findByText(/pending=0 /, {}, { timeout: 10_000 });
  assert.equal(psql(node.db, `SELECT title FROM "Post" WHERE id = 'p1'`), 'mine');
  assert.equal(psql(node.db, `SELECT title FROM "Post" WHERE id = 'h2'`), 'tracked');

  // A failing operation keeps its error.
  await act(async () => {
    await op.execute('Nope', 'findMany', {}).catch(() => {});
  });
  assert.match(op.error.message, /Nope/);
  await act(() => db.setMode('auto'));
});

test('useModelChanges fires for server changes the node pulls', async () => {
  const seen = [];
  function Watcher() {
    useModelChanges((models) => seen.push(...models), ['Post']);
    return h('p', null, 'watching');
  }
  render(h(OutpostProvider, { url: node.url, token: node.token }, h(Watcher)));
  await screen.findByText('watching');
  // Let the stream open before the change.
  await new Promise((r) => setTimeout(r, 500));
  psql(node.db, `INSERT INTO "Post" (id, title) VALUES ('h3', 'pulled')`);
  await until(() => seen.includes('Post'), 10_000, 'the pulled change');
});

test('without the event stream the hooks fall back to polling the status', async () => {
  // A fetch that cannot open the event stream (a proxy that buffers it, say).
  const noEvents = (input, init) =>
    String(input).endsWith('/api/database/events') ? Promise.reject(new TypeError('blocked')) : fetch(input, init);
  function Mode() {
    const { mode, live } = useDatabase();
    return h('p', null, `mode=${mode} live=${live}`);
  }
  render(h(OutpostProvider, { url: node.url, token: node.token, fetch: noEvents }, h(Mode)));
  await screen.findByText('mode=auto live=false');
  // Another client changes the mode: the next poll (every 3 s) shows it.
  const other = new OutpostClient({ url: node.url, token: node.token });
  await other.setMode('local');
  try {
    await screen.findByText('mode=local live=false', {}, { timeout: 8000 });
  } finally {
    await other.setMode('auto');
  }
});
