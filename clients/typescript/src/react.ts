/**
 * The React hooks of the original description, on an outpost node:
 *
 * * `useDatabase()` — `isOnline`, `useLocalDatabase`, `syncAllModels` and
 *   the status's other fields, plus `mode`/`setMode`, `pending`,
 *   `conflicts`, `sync(direction, models)` and `resolve`.
 * * `useModelService('Post')` — Prisma's operations on a model.
 * * `useDatabaseOperation()` — a write with its loading, error and sync state.
 *
 * The state is shared per client and kept current by the node's live events
 * (`GET /api/database/events`); while the stream is down it polls the status
 * every 3 s instead. Without `<OutpostProvider>` the hooks talk to the page's
 * own origin, or to what `configureOutpost()` set.
 */

import {
  createContext,
  createElement,
  useCallback,
  useContext,
  useEffect,
  useMemo,
  useRef,
  useState,
  useSyncExternalStore,
  type ReactNode,
} from 'react';

import { OutpostClient, type ClientOptions } from './client.js';
import type {
  Conflict,
  DatabaseStatus,
  Direction,
  Key,
  LogEntry,
  Mode,
  ModelName,
  ModelService,
  Operation,
  OutpostEvent,
  Resolution,
  SyncProgress,
  SyncReport,
  SyncStatus,
} from './types.js';

/** How often the status is polled while the event stream is down. */
export const POLL_MS = 3000;

/** What `useDatabase()` reads, shared by every component of one client. */
export interface DatabaseSnapshot {
  /** The last status; `null` before the first answer. */
  status: DatabaseStatus | null;
  /** Rows in conflict, with base, local and server. */
  conflicts: Conflict[];
  /** The run under way. */
  progress: SyncProgress | null;
  /** The `SyncLog` rows of the last run that finished. */
  lastRun: LogEntry[];
  /** The answer to the last sync started from this page. */
  lastSyncResult: SyncReport | null;
  /** The live event stream is open (otherwise the status is polled). */
  live: boolean;
  /** The last failure to reach the node, if the last attempt failed. */
  error: Error | null;
}

type ChangeListener = (models: string[], source: 'write' | 'sync') => void;

/** The shared state of one client: status, conflicts, events, polling. */
export class DatabaseStore {
  readonly client: OutpostClient;
  private snapshot: DatabaseSnapshot = {
    status: null,
    conflicts: [],
    progress: null,
    lastRun: [],
    lastSyncResult: null,
    live: false,
    error: null,
  };
  private listeners = new Set<() => void>();
  private changeListeners = new Set<ChangeListener>();
  private users = 0;
  private subscription: { close(): void } | null = null;
  private poll: ReturnType<typeof setInterval> | null = null;
  private conflictCount = -1;

  constructor(client: OutpostClient) {
    this.client = client;
  }

  getSnapshot = (): DatabaseSnapshot => this.snapshot;

  /** For `useSyncExternalStore`: the first subscriber starts the events. */
  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    if (this.users++ === 0) this.start();
    return () => {
      this.listeners.delete(listener);
      if (--this.users === 0) this.stop();
    };
  };

  /** Called with the models whose data may have changed. */
  onChange(listener: ChangeListener): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  private set(patch: Partial<DatabaseSnapshot>) {
    this.snapshot = { ...this.snapshot, ...patch };
    for (const l of this.listeners) l();
  }

  private start() {
    void this.refresh();
    this.subscription = this.client.subscribe((e) => this.apply(e), {
      onOpen: () => {
        this.stopPolling();
        this.set({ live: true, error: null });
      },
      onError: () => {
        if (this.snapshot.live) this.set({ live: false });
        this.startPolling();
      },
    });
  }

  private stop() {
    this.subscription?.close();
    this.subscription = null;
    this.stopPolling();
    if (this.snapshot.live) this.snapshot = { ...this.snapshot, live: false };
  }

  private startPolling() {
    if (this.poll === null) this.poll = setInterval(() => void this.refresh(), POLL_MS);
  }

  private stopPolling() {
    if (this.poll !== null) clearInterval(this.poll);
    this.poll = null;
  }

  private apply(event: OutpostEvent) {
    switch (event.type) {
      case 'status':
        this.setStatus(event.data);
        break;
      case 'progress':
        this.set({ progress: event.data });
        break;
      case 'sync':
        this.set({ lastRun: event.data.entries });
        break;
      case 'changed':
        for (const l of this.changeListeners) l(event.data.models, event.data.source);
        break;
    }
  }

  private setStatus(status: DatabaseStatus) {
    this.set({ status, progress: status.syncing, error: null });
    if (status.conflicts !== this.conflictCount) {
      this.conflictCount = status.conflicts;
      void this.loadConflicts();
    }
  }

  private async loadConflicts() {
    try {
      const conflicts = this.conflictCount === 0 ? [] : await this.client.conflicts();
      this.set({ conflicts });
    } catch (e) {
      this.set({ error: asError(e) });
    }
  }

  /** Fetches the status now (after an action, or when polling). */
  async refresh(): Promise<void> {
    try {
      this.setStatus(await this.client.status());
    } catch (e) {
      this.set({ error: asError(e) });
    }
  }

  /** A sync; its answer is kept as `lastSyncResult`. */
  async sync(direction: Direction = 'BIDIRECTIONAL', models?: string[]): Promise<SyncReport> {
    try {
      const report = await this.client.sync(direction, models);
      this.set({ lastSyncResult: report });
      return report;
    } finally {
      await this.refresh();
    }
  }

  async setMode(mode: Mode): Promise<void> {
    await this.client.setMode(mode);
    await this.refresh();
  }

  async resolve(model: string, key: Key, resolution: Resolution): Promise<void> {
    await this.client.resolve(model, key, resolution);
    this.conflictCount = -1;
    await this.refresh();
  }

  /** Tells this page's listeners about a write it made (before the event arrives). */
  noteWrite(model: string) {
    for (const l of this.changeListeners) l([model], 'write');
  }
}

function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

const stores = new WeakMap<OutpostClient, DatabaseStore>();

/** The one store of `client`. */
export function storeFor(client: OutpostClient): DatabaseStore {
  let s = stores.get(client);
  if (!s) {
    s = new DatabaseStore(client);
    stores.set(client, s);
  }
  return s;
}

let defaultClient: OutpostClient | null = null;

/** The client the hooks use outside any `<OutpostProvider>`. */
export function configureOutpost(options: ClientOptions | OutpostClient): OutpostClient {
  defaultClient = options instanceof OutpostClient ? options : new OutpostClient(options);
  return defaultClient;
}

function getDefaultClient(): OutpostClient {
  if (!defaultClient) defaultClient = new OutpostClient();
  return defaultClient;
}

const OutpostContext = createContext<OutpostClient | null>(null);

/** Props of `<OutpostProvider>`: a client, or the options to make one. */
export interface OutpostProviderProps extends ClientOptions {
  client?: OutpostClient;
  children?: ReactNode;
}

/** Gives the hooks below it a client (`url`, `token`, … or `client`). */
export function OutpostProvider(props: OutpostProviderProps) {
  const { client, url, token, credentials, fetch: fetchFn, children } = props;
  const value = useMemo(() => {
    if (client) return client;
    const options: ClientOptions = {};
    if (url !== undefined) options.url = url;
    if (token !== undefined) options.token = token;
    if (credentials !== undefined) options.credentials = credentials;
    if (fetchFn !== undefined) options.fetch = fetchFn;
    return new OutpostClient(options);
  }, [client, url, token, credentials, fetchFn]);
  return createElement(OutpostContext.Provider, { value }, children);
}

/** The client of the nearest `<OutpostProvider>`, or the default one. */
export function useOutpostClient(): OutpostClient {
  return useContext(OutpostContext) ?? getDefaultClient();
}

/** What `useDatabase()` returns. */
export interface DatabaseContextValue {
  /** The server is reachable (`false` until the first status arrives). */
  isOnline: boolean;
  /** Operations go to the local replica now (the seed's name). */
  useLocalDatabase: boolean;
  /** The same, under the status's name. */
  usingLocalDatabase: boolean;
  localDbConnected: boolean;
  remoteDbConnected: boolean;
  /** `auto`, `local` or `remote`; `null` before the first status. */
  mode: Mode | null;
  /** Sets the mode. */
  setMode: (mode: Mode) => Promise<void>;
  /** Local changes not yet pushed. */
  pending: number;
  /** Rows refused by the server. */
  failed: number;
  /** Rows in conflict, with base, local and server rows. */
  conflicts: Conflict[];
  /** A sync of every model, both ways (the seed's "Sync Now"). */
  syncAllModels: () => Promise<SyncReport>;
  /** A sync in one direction, of some models or all. */
  sync: (direction?: Direction, models?: string[]) => Promise<SyncReport>;
  /** Resolves a conflict: `'local'`, `'server'` or `{ merged: row }`. */
  resolve: (model: string, key: Key, resolution: Resolution) => Promise<void>;
  /** The run under way, with its phase and rows. */
  syncing: SyncProgress | null;
  /** A sync is running. */
  isSyncing: boolean;
  lastSyncAt: string | null;
  /** The answer of the last sync started from this page. */
  lastSyncResult: SyncReport | null;
  /** The `SyncLog` rows of the last finished run (whoever started it). */
  lastRun: LogEntry[];
  /** The whole last status. */
  status: DatabaseStatus | null;
  /** Updates come from the event stream (`false`: polled every 3 s). */
  live: boolean;
  error: Error | null;
  /** Fetches the status now. */
  refresh: () => Promise<void>;
}

/** The database state and actions (the seed's `DatabaseContext`). */
export function useDatabase(): DatabaseContextValue {
  const store = storeFor(useOutpostClient());
  const snap = useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
  const syncAllModels = useCallback(() => store.sync('BIDIRECTIONAL'), [store]);
  const sync = useCallback((d?: Direction, m?: string[]) => store.sync(d, m), [store]);
  const setMode = useCallback((m: Mode) => store.setMode(m), [store]);
  const resolve = useCallback((m: string, k: Key, r: Resolution) => store.resolve(m, k, r), [store]);
  const refresh = useCallback(() => store.refresh(), [store]);
  const s = snap.status;
  return {
    isOnline: s?.isOnline ?? false,
    useLocalDatabase: s?.usingLocalDatabase ?? false,
    usingLocalDatabase: s?.usingLocalDatabase ?? false,
    localDbConnected: s?.localDbConnected ?? false,
    remoteDbConnected: s?.remoteDbConnected ?? false,
    mode: s?.mode ?? null,
    setMode,
    pending: s?.pendingChanges ?? 0,
    failed: s?.failed ?? 0,
    conflicts: snap.conflicts,
    syncAllModels,
    sync,
    resolve,
    syncing: snap.progress,
    isSyncing: snap.progress !== null,
    lastSyncAt: s?.lastSyncAt ?? null,
    lastSyncResult: snap.lastSyncResult,
    lastRun: snap.lastRun,
    status: s,
    live: snap.live,
    error: snap.error,
    refresh,
  };
}

/**
 * Prisma's operations on `model` (the seed's `useModelService('Post')`).
 * The object is stable across renders. Writes go through the node, which
 * tracks them for sync (records read from the replica carry `syncStatus`).
 */
export function useModelService<N extends ModelName>(model: N): ModelService<N> {
  const client = useOutpostClient();
  const store = storeFor(client);
  return useMemo(() => {
    const service = client.model(model);
    // Writes tell this page's listeners at once (the event follows).
    const noted = <F extends (...a: never[]) => Promise<unknown>>(f: F): F =>
      (async (...a: Parameters<F>) => {
        const r = await f(...a);
        store.noteWrite(model);
        return r;
      }) as F;
    return {
      ...service,
      create: noted(service.create.bind(service)),
      createMany: noted(service.createMany.bind(service)),
      update: noted(service.update.bind(service)),
      updateMany: noted(service.updateMany.bind(service)),
      upsert: noted(service.upsert.bind(service)),
      delete: noted(service.delete.bind(service)),
      deleteMany: noted(service.deleteMany.bind(service)),
    };
  }, [client, store, model]);
}

/**
 * Calls `onChange` when `models` (or any model, when absent) may have
 * changed: a write through this node or a sync that moved rows. For
 * refetching what a component shows.
 */
export function useModelChanges(onChange: (models: string[]) => void, models?: string[]): void {
  const store = storeFor(useOutpostClient());
  const ref = useRef(onChange);
  ref.current = onChange;
  const key = models?.join('\u0000');
  // Subscribing to the store keeps its event stream open.
  useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
  useEffect(() => {
    const wanted = key === undefined ? null : new Set(key.split('\u0000'));
    return store.onChange((changed) => {
      const hit = wanted === null ? changed : changed.filter((m) => wanted.has(m));
      if (hit.length > 0) ref.current(hit);
    });
  }, [store, key]);
}

/** What `useDatabaseOperation()` returns. */
export interface DatabaseOperation {
  /**
   * Runs `operation` on `model` with Prisma's arguments (or any async
   * function of the client), tracking loading and error; returns its result.
   */
  execute: {
    <T = unknown>(model: string, operation: Operation, args?: object): Promise<T>;
    <T>(fn: (client: OutpostClient) => Promise<T>): Promise<T>;
  };
  loading: boolean;
  error: Error | null;
  /** The last result. */
  result: unknown;
  /**
   * The written record's `syncStatus`: `PENDING` when it went to the
   * replica (to be pushed), `SYNCED` when the server took it; `null` before
   * a write or for results without records.
   */
  syncStatus: SyncStatus | null;
  /** Local changes not yet pushed, node-wide. */
  pending: number;
  reset: () => void;
}

/** A write (or any call) with loading, error and sync tracking. */
export function useDatabaseOperation(): DatabaseOperation {
  const client = useOutpostClient();
  const store = storeFor(client);
  const snap = useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
  const [state, setState] = useState<{
    loading: boolean;
    error: Error | null;
    result: unknown;
    syncStatus: SyncStatus | null;
  }>({ loading: false, error: null, result: undefined, syncStatus: null });

  const execute = useCallback(
    async (a: string | ((c: OutpostClient) => Promise<unknown>), op?: Operation, args?: object) => {
      setState((s) => ({ ...s, loading: true, error: null }));
      try {
        const result = typeof a === 'function' ? await a(client) : await client.run(a, op ?? 'findMany', args ?? {});
        if (typeof a === 'string' && op && !op.startsWith('find') && op !== 'count') store.noteWrite(a);
        const status = await client.status().catch(() => null);
        setState({ loading: false, error: null, result, syncStatus: syncStatusOf(result, status) });
        void store.refresh();
        return result;
      } catch (e) {
        setState((s) => ({ ...s, loading: false, error: asError(e) }));
        throw e;
      }
    },
    [client, store],
  ) as DatabaseOperation['execute'];

  const reset = useCallback(
    () => setState({ loading: false, error: null, result: undefined, syncStatus: null }),
    [],
  );
  return { execute, ...state, pending: snap.status?.pendingChanges ?? 0, reset };
}

function syncStatusOf(result: unknown, status: DatabaseStatus | null): SyncStatus | null {
  if (typeof result !== 'object' || result === null || Array.isArray(result)) return null;
  const own = (result as { syncStatus?: unknown }).syncStatus;
  if (own === 'SYNCED' || own === 'PENDING' || own === 'CONFLICT' || own === 'FAILED') return own;
  // A record from the server (remote mode) carries no syncStatus: the
  // server has it, so it is synced.
  if ('count' in result) return null;
  return status && !status.usingLocalDatabase ? 'SYNCED' : null;
}
