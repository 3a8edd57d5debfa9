// A client generated from the live OpenAPI document (openapi-typescript +
// openapi-fetch), used as an application would: compiled with
// `tsc --strict` and no casts, then run against the node by
// scripts/check-openapi.sh. The node serves the sample schema of that script
// (User: id serial, email, name; Post: id text, title, userId → User).

import createClient from 'openapi-fetch';
import type { paths, components } from './generated/api.js';

type Post = components['schemas']['Post'];

const url = process.env.OUTPOST_URL ?? 'http://127.0.0.1:3000';
const token = process.env.OUTPOST_ADMIN_TOKEN ?? '';
const api = createClient<paths>({ baseUrl: url, headers: { Authorization: `Bearer ${token}` } });

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`openapi sample: ${what}`);
}

const status = await api.GET('/api/database/status');
check(status.data !== undefined, `status: ${JSON.stringify(status.error)}`);
if (status.data) {
  const online: boolean = status.data.isOnline;
  const phase: string | undefined = status.data.syncing?.phase;
  const pending: number = status.data.pendingChanges;
  check(online && phase === undefined && pending >= 0, 'status fields');
}

const posts = await api.POST('/api/models/Post/findMany', {
  body: { include: { user: true }, orderBy: { id: 'asc' }, take: 10 },
});
check(posts.data !== undefined, `findMany: ${JSON.stringify(posts.error)}`);
const list: Post[] = posts.data ?? [];
const first = list[0];
const title: string | undefined = first?.title;
const email: string | undefined = first?.user?.email;
check(title === 'hello' && email === 'ada@example.com', `findMany include: ${JSON.stringify(first)}`);

const created = await api.POST('/api/models/Post/create', {
  body: { data: { id: 'sample-1', title: 'from the sample', userId: 1 } },
});
check(created.data?.title === 'from the sample', `create: ${JSON.stringify(created.error)}`);

const count = await api.POST('/api/models/Post/count', { body: { where: { title: 'from the sample' } } });
const n: number | undefined = count.data;
check(n === 1, `count: ${JSON.stringify(count)}`);

const removed = await api.POST('/api/models/Post/deleteMany', { body: { where: { id: 'sample-1' } } });
const deleted: number | undefined = removed.data?.count;
check(deleted === 1, 'deleteMany');

// Type-valid, refused at run time: findUnique needs a unique field.
const bad = await api.POST('/api/models/Post/findUnique', { body: { where: { title: 'hello' } } });
const code: string | undefined = bad.error?.error.code;
check(bad.response.status === 400 && code !== undefined, `a bad request answers the Error schema: ${JSON.stringify(bad.error)}`);

const report = await api.POST('/api/database/status', { body: { direction: 'FROM_SERVER', models: ['Post'] } });
const processed: number | undefined = report.data?.results['Post']?.recordsProcessed;
check(report.data?.success === true && processed !== undefined, 'sync');

const log = await api.GET('/api/database/log', { params: { query: { limit: 5 } } });
const entry = log.data?.entries[0];
check(entry !== undefined && typeof entry.recordsSucceeded === 'number', 'log');

console.log('openapi sample: the generated client works against the node');
