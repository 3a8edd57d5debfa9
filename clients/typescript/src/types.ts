/**
 * The shapes of outpost's HTTP API (see the repository's docs/http.md), and
 * the typing of the model services: a `Register` interface that the file
 * written by `outpost generate typescript` augments with the node's models,
 * so that `useModelService('Post').findMany({ include: { user: true } })` is
 * typed end to end. Without it every model is an untyped record.
 */

/** Where a record stands in the sync, on records read from the replica. */
export type SyncStatus = 'SYNCED' | 'PENDING' | 'CONFLICT' | 'FAILED';

/** `auto` (server while reachable), `local` (replica) or `remote` (server). */
export type Mode = 'auto' | 'local' | 'remote';

/** `BIDIRECTIONAL` (push then pull), `TO_SERVER` (push) or `FROM_SERVER` (pull). */
export type Direction = 'BIDIRECTIONAL' | 'TO_SERVER' | 'FROM_SERVER';

/** The run under way. */
export interface SyncProgress {
  direction: Direction;
  trigger: string;
  /** `connecting`, `bootstrap`, `push` or `pull`. */
  phase: string;
  /** Rows handled in this phase so far. */
  rows: number;
  /** The table being copied, during a bootstrap. */
  table: string | null;
  startedAt: string;
}

/** `GET /api/database/status`: the seed's fields plus outpost's. */
export interface DatabaseStatus {
  isOnline: boolean;
  localDbConnected: boolean;
  remoteDbConnected: boolean;
  timestamp: string;
  mode: Mode;
  usingLocalDatabase: boolean;
  pendingChanges: number;
  conflicts: number;
  failed: number;
  lastSyncAt: string | null;
  /** The last run attempted, whatever its outcome (`at`: when it ended). */
  lastAttempt?: {
    at: string;
    status: string;
    direction: string;
    trigger: string;
    error: string | null;
  } | null;
  /** Seconds since the pull cursor last moved; null before the first pull. */
  replicationLagSeconds?: number | null;
  syncing: SyncProgress | null;
}

/** Counts of one model in a sync run. */
export interface ModelStats {
  recordsProcessed: number;
  recordsSucceeded: number;
  recordsFailed: number;
  conflicts?: number;
  [extra: string]: unknown;
}

/** `POST /api/database/status`: the seed's response. */
export interface SyncReport {
  success: boolean;
  results: Record<string, ModelStats>;
  errors: Record<string, string>;
  timestamp: string;
  direction: Direction;
  bootstrapped: boolean;
  heldBack: boolean;
}

/** A `SyncLog` row: one model in one run. */
export interface LogEntry {
  id: number;
  model: string;
  direction: Direction;
  trigger: string;
  /** `RUNNING`, `SUCCESS`, `FAILED` or `INTERRUPTED` (its process stopped before the run ended). */
  status: string;
  startedAt: string;
  completedAt: string | null;
  recordsProcessed: number;
  recordsSucceeded: number;
  recordsFailed: number;
  conflicts: number;
  error: string | null;
}

/** One model's counts and last sync (`GET /api/database/models`). */
export interface ModelSummary {
  model: string;
  pending: number;
  conflicts: number;
  failed: number;
  lastSync: LogEntry | null;
}

/** A row key: its value for a one-column key, an array for a composite one. */
export type Key = string | number | Array<string | number>;

/** A row in JSON form, column by column. */
export type Row = Record<string, unknown>;

/** A row in conflict: the base both sides started from, and each side now. */
export interface Conflict {
  model: string;
  key: Key;
  serverVersion: number | null;
  changedAt: string;
  base: Row | null;
  local: Row | null;
  server: Row | null;
  /** Why the local row cannot be read (a value another program wrote that
   * does not fit its column); `local` is null then. */
  localProblem?: string;
}

/** How to resolve a conflict: keep one side whole, or a merged row. */
export type Resolution = 'local' | 'server' | { merged: Row };

/** A pending or refused local change. */
export interface Change {
  model: string;
  key: Key;
  operation: 'insert' | 'update' | 'delete';
  values: Row | null;
  changedAt: string;
  localSeq: number;
  /** The server's message, on refused rows. */
  error?: string;
}

/** Paging of the lists (`limit` 0–1000, default 50). */
export interface Paging {
  model?: string;
  limit?: number;
  offset?: number;
}

/** A page of a list, with the total over all pages. */
export interface Page {
  total: number;
  limit: number;
  offset: number;
}

/** A live event of `GET /api/database/events`. */
export type OutpostEvent =
  | { type: 'status'; data: DatabaseStatus }
  | { type: 'progress'; data: SyncProgress | null }
  | { type: 'sync'; data: { entries: LogEntry[] } }
  | { type: 'changed'; data: { models: string[]; source: 'write' | 'sync' } };

// ---- model typing ---------------------------------------------------------

/** A relation of a model, as the generated types describe it. */
export interface RelationInfo {
  model: string;
  list: boolean;
  nullable: boolean;
}

/** The types of one model, as `outpost generate typescript` writes them. */
export interface ModelTypes {
  record: object;
  where: object;
  whereUnique: object;
  orderBy: object;
  select: object;
  include: object;
  create: object;
  update: object;
  scalarField: string;
  relations: Record<string, RelationInfo>;
}

/** An untyped model: what every model is without generated types. */
export interface UntypedModel {
  record: Row & { syncStatus?: SyncStatus };
  where: Row;
  whereUnique: Row;
  orderBy: Row | Row[];
  select: Record<string, unknown>;
  include: Record<string, unknown>;
  create: Row;
  update: Row;
  scalarField: string;
  // eslint-disable-next-line @typescript-eslint/no-empty-object-type
  relations: {};
}

/**
 * Augmented by the generated file:
 * `declare module 'outpost-client' { interface Register { models: Models } }`.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface Register {}

/** The node's models: the generated ones, or any name as an untyped model. */
export type Models = Register extends { models: infer M } ? M : Record<string, UntypedModel>;

/** A model's name. */
export type ModelName = keyof Models & string;

type Types<N> = N extends keyof Models
  ? Models[N] extends ModelTypes
    ? Models[N]
    : UntypedModel
  : UntypedModel;

type Rec<N> = Types<N>['record'];
type Rel<N> = Types<N>['relations'];

type Enabled<V> = V extends false | undefined | null ? never : V;

type RelationPayload<R, Arg> = R extends { model: infer T; list: infer L; nullable: infer Nu }
  ? L extends true
    ? Payload<T, Arg>[]
    : Nu extends true
      ? Payload<T, Arg> | null
      : Payload<T, Arg>
  : never;

type IncludePayload<N, I> = {
  [K in keyof I & keyof Rel<N> as [Enabled<I[K]>] extends [never] ? never : K]: RelationPayload<
    Rel<N>[K],
    I[K] extends object ? I[K] : unknown
  >;
};

type SelectPayload<N, S> = {
  [K in keyof S & keyof Rec<N> as [Enabled<S[K]>] extends [never] ? never : K]: Rec<N>[K];
} & IncludePayload<N, Pick<S, keyof S & keyof Rel<N>>>;

/** A record of model `N` as an operation with arguments `A` returns it. */
export type Payload<N, A> = A extends { select: infer S extends object }
  ? SelectPayload<N, S> & { syncStatus?: SyncStatus }
  : A extends { include: infer I extends object }
    ? Rec<N> & IncludePayload<N, I>
    : Rec<N>;

type Sort = 'asc' | 'desc';

/** `findMany`'s arguments. */
export interface FindManyArgs<N> {
  where?: Types<N>['where'];
  orderBy?: Types<N>['orderBy'] | Types<N>['orderBy'][];
  take?: number;
  skip?: number;
  cursor?: Types<N>['whereUnique'];
  distinct?: Types<N>['scalarField'] | Types<N>['scalarField'][];
  select?: Types<N>['select'];
  include?: Types<N>['include'];
}
/** `findFirst`'s arguments. */
export type FindFirstArgs<N> = FindManyArgs<N>;
/** `findUnique`'s arguments. */
export interface FindUniqueArgs<N> {
  where: Types<N>['whereUnique'];
  select?: Types<N>['select'];
  include?: Types<N>['include'];
}
/** `count`'s arguments. */
export interface CountArgs<N> {
  where?: Types<N>['where'];
  orderBy?: Types<N>['orderBy'] | Types<N>['orderBy'][];
  take?: number;
  skip?: number;
}
/** `create`'s arguments. */
export interface CreateArgs<N> {
  data: Types<N>['create'];
  select?: Types<N>['select'];
  include?: Types<N>['include'];
}
/** `createMany`'s arguments. */
export interface CreateManyArgs<N> {
  data: Types<N>['create'] | Types<N>['create'][];
  skipDuplicates?: boolean;
}
/** `update`'s arguments. */
export interface UpdateArgs<N> {
  where: Types<N>['whereUnique'];
  data: Types<N>['update'];
  select?: Types<N>['select'];
  include?: Types<N>['include'];
}
/** `updateMany`'s arguments. */
export interface UpdateManyArgs<N> {
  where?: Types<N>['where'];
  data: Types<N>['update'];
}
/** `upsert`'s arguments. */
export interface UpsertArgs<N> {
  where: Types<N>['whereUnique'];
  create: Types<N>['create'];
  update: Types<N>['update'];
  select?: Types<N>['select'];
  include?: Types<N>['include'];
}
/** `delete`'s arguments. */
export interface DeleteArgs<N> {
  where: Types<N>['whereUnique'];
  select?: Types<N>['select'];
  include?: Types<N>['include'];
}
/** `deleteMany`'s arguments. */
export interface DeleteManyArgs<N> {
  where?: Types<N>['where'];
}

/** What `createMany`, `updateMany` and `deleteMany` answer. */
export interface BatchPayload {
  count: number;
}

/** Prisma's operations on model `N`, as `useModelService('N')` offers them. */
export interface ModelService<N> {
  readonly model: N;
  findMany<A extends FindManyArgs<N>>(args?: A): Promise<Payload<N, A>[]>;
  findFirst<A extends FindFirstArgs<N>>(args?: A): Promise<Payload<N, A> | null>;
  findUnique<A extends FindUniqueArgs<N>>(args: A): Promise<Payload<N, A> | null>;
  count(args?: CountArgs<N>): Promise<number>;
  create<A extends CreateArgs<N>>(args: A): Promise<Payload<N, A>>;
  /** The seed's shorthand: `create(postData)` is `create({ data: postData })`. */
  create(data: Types<N>['create']): Promise<Payload<N, unknown>>;
  createMany(args: CreateManyArgs<N>): Promise<BatchPayload>;
  update<A extends UpdateArgs<N>>(args: A): Promise<Payload<N, A>>;
  updateMany(args: UpdateManyArgs<N>): Promise<BatchPayload>;
  upsert<A extends UpsertArgs<N>>(args: A): Promise<Payload<N, A>>;
  delete<A extends DeleteArgs<N>>(args: A): Promise<Payload<N, A>>;
  deleteMany(args?: DeleteManyArgs<N>): Promise<BatchPayload>;
}

/** Prisma's operation names. */
export type Operation =
  | 'findMany'
  | 'findFirst'
  | 'findUnique'
  | 'count'
  | 'create'
  | 'createMany'
  | 'update'
  | 'updateMany'
  | 'upsert'
  | 'delete'
  | 'deleteMany';

export type { Sort };
