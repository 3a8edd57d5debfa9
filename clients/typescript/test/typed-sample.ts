// Compiled with `tsc --strict` by generate.test.mjs against the types that
// `outpost generate typescript` wrote for the test node's schema
// (generated/models.ts): the model services and hooks are typed end to end
// with no type arguments and no casts. The `@ts-expect-error` lines are
// mistakes the types must catch (tsc fails if they compile).

import { OutpostClient } from 'outpost-client';
import { useModelService } from 'outpost-client/react';
import type { Post, User, PostWhereInput, PostCreateInput, PostInclude } from './generated/models.js';

export async function sample(client: OutpostClient): Promise<string[]> {
  const posts = client.model('Post');
  const withUser = await posts.findMany({ include: { user: true }, where: { title: { contains: 'e' } } });
  const emails: string[] = withUser.map((p) => p.user?.email ?? '');
  const title: string = withUser[0]?.title ?? '';
  const status: 'SYNCED' | 'PENDING' | 'CONFLICT' | 'FAILED' | undefined = withUser[0]?.syncStatus;

  const plain = await posts.findMany();
  // @ts-expect-error: not included, so not there
  plain[0]?.user;

  const users = await client.model('User').findMany({ include: { posts: { include: { user: true } } } });
  const nested: string | undefined = users[0]?.posts[0]?.user?.name ?? undefined;

  const one: Post | null = await posts.findUnique({ where: { id: 'p1' } });
  const created = await posts.create({ data: { title: 'typed', userId: 'u1' } });
  const createdTitle: string = created.title;
  const seed = await posts.create({ title: 'seed shorthand' });
  const n: number = await posts.count({ where: { published: true } });
  const batch: { count: number } = await posts.deleteMany({ where: { id: { in: ['x'] } } });

  const where: PostWhereInput = { OR: [{ views: { gt: 3 } }, { createdAt: { lt: new Date() } }] };
  const data: PostCreateInput = { title: 'x', createdAt: new Date() };
  const include: PostInclude = { user: true };

  // @ts-expect-error: no such relation
  await posts.findMany({ include: { author: true } });
  // @ts-expect-error: title is a string
  await posts.create({ data: { title: 5 } });
  // @ts-expect-error: a Post needs a title
  await posts.create({ data: { views: 1 } });
  // @ts-expect-error: no such model
  client.model('Nope');

  const u: User | undefined = users[0];
  return [...emails, title, status ?? '', nested ?? '', one?.id ?? '', createdTitle, seed.title, String(n), String(batch.count), JSON.stringify([where, data, include, u?.email])];
}

export function Component(): string {
  const service = useModelService('Post');
  void service.findMany({ include: { user: true } }).then((rows) => rows.map((r) => r.user?.name));
  return service.model;
}
