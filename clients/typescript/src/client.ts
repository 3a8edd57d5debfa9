/**
 * `OutpostClient`: the whole HTTP API of an outpost node (docs/http.md) over
 * `fetch`, with the model service as Prisma-style methods and the live
 * events as a subscription that reconnects by itself.
 */

import { parseEvents } from './events.js';
import type {
  Change,
  Conflict,
  DatabaseStatus,
  Direction,
  Key,
  LogEntry,
  Mode,
  ModelName,
  ModelService,
  ModelSummary,
  Operation,
  OutpostEvent,
  Page,
  Paging,
  Resolution,
  Row,
  SyncReport,
} from './types.js';

/** How to reach the node. */
export interface ClientOptions {
  /**
   * The node's base URL (`http://127.0.0.1:4000`). Empty or absent: the
   * page's own origin (relative URLs), for an app served by the same host.
   */
  url?: string;
  /** `OUTPOST_ADMIN_TOKEN`, sent as `Authorization: Bearer <token>`. */
  token?: string;
  /** `fetch`'s `credentials` (default `same-origin`; `include` sends cookies cross-origin). */
  credentials?: RequestCredentials;
  /** Another `fetch` (tests, or a server-side fetch with its own agent). */
  fetch?: typeof fetch;
}

/** An error answer of the node (`{"error": {"code", "message"}}`) or a network failure. */
export class OutpostError extends Error {
  /** The HTTP status; 0 when the node could not be reached. */
  readonly status: number;
  /** The node's stable code (`unknown_model`, `invalid_body`, `unreachable`…), or `network`. */
  readonly code: string;

  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'OutpostError';
    this.status = status;
    this.code = code;
  }
}

/** A live-event subscription. */
export interface Subscription {
  /** Stops reading and reconnecting. */
  close(): void;
}

/** Callbacks of [`OutpostClient.subscribe`]. */
export interface SubscribeOptions {
  /** The stream is open (again). */
  onOpen?: () => void;
  /** The stream failed or ended; it reconnects after a backoff. */
  onError?: (error: unknown) => void;
  /** First reconnect delay in ms (doubles up to 30 s). Default 1000. */
  retryMs?: number;
}

const WRITE_ARG_KEYS = new Set(['data', 'select', 'include']);

/** Whether `create`'s argument is Prisma's `{data, select?, include?}` rather than the data itself. */
function isCreateArgs(arg: unknown): boolean {
  if (typeof arg !== 'object' || arg === null || Array.isArray(arg)) return false;
  const keys = Object.keys(arg);
  const data = (arg as Record<string, unknown>).data;
  return (
    keys.includes('data') &&
    keys.every((k) => WRITE_ARG_KEYS.has(k)) &&
    typeof data === 'object' &&
    data !== null &&
    !Array.isArray(data)
  );
}

function keyPath(key: Key): string {
  // Always JSON: a text key "7" must not read as the number 7.
  return encodeURIComponent(JSON.stringify(key));
}

/** A client of one outpost node. */
export class OutpostClient {
  readonly url: string;
  private readonly token: string | undefined;
  private readonly credentials: RequestCredentials | undefined;
  private readonly fetchFn: typeof fetch;

  constructor(options: ClientOptions = {}) {
    this.url = (options.url ?? '').replace(/\/+$/, '');
    this.token = options.token;
    this.credentials = options.credentials;
    const f = options.fetch ?? globalThis.fetch;
    if (typeof f !== 'function') {
      throw new Error('outpost-client needs fetch (Node 18+ or a browser), or options.fetch');
    }
    // Called unbound, `window.fetch` throws "Illegal invocation".
    this.fetchFn = (input, init) => f(input, init);
  }

  private headers(json: boolean): Record<string, string> {
    const h: Record<string, string> = { Accept: 'application/json' };
    if (json) h['Content-Type'] = 'application/json';
    if (this.token) h.Authorization = `Bearer ${this.token}`;
    return h;
  }

  /** One call of the API: JSON in, JSON out, an [`OutpostError`] for any 4xx/5xx. */
  async request<T>(method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown): Promise<T> {
    const init: RequestInit = { method, headers: this.headers(body !== undefined) };
    if (body !== undefined) init.body = JSON.stringify(body);
    if (this.credentials) init.credentials = this.credentials;
    let response: Response;
    try {
      response = await this.fetchFn(this.url + path, init);
    } catch (e) {
      throw new OutpostError(0, 'network', `cannot reach the outpost node at ${this.url || '(this origin)'}: ${String(e)}`);
    }
    const text = await response.text();
    let json: unknown = null;
    if (text !== '') {
      try {
        json = JSON.parse(text);
      } catch {
        if (response.ok) {
          throw new OutpostError(response.status, 'bad_response', `${method} ${path}: the answer is not JSON`);
        }
      }
    }
    if (!response.ok) {
      const err = (json as { error?: { code?: string; message?: string } } | null)?.error;
      throw new OutpostError(
        response.status,
        err?.code ?? 'http_error',
        err?.message ?? `${method} ${path} answered ${response.status} ${response.statusText}`,
      );
    }
    return json as T;
  }

  private list(path: string, paging: Paging = {}): string {
    const q = new URLSearchParams();
    if (paging.model !== undefined) q.set('model', paging.model);
    if (paging.limit !== undefined) q.set('limit', String(paging.limit));
    if (paging.offset !== undefined) q.set('offset', String(paging.offset));
    const s = q.toString();
    return s ? `${path}?${s}` : path;
  }

  /** `GET /api/database/status`. */
  status(): Promise<DatabaseStatus> {
    return this.request('GET', '/api/database/status');
  }

  /** `POST /api/database/status`: a sync, of every model unless `models` is given. */
  sync(direction: Direction = 'BIDIRECTIONAL', models?: string[]): Promise<SyncReport> {
    return this.request('POST', '/api/database/status', models ? { direction, models } : { direction });
  }

  /** `GET /api/database/mode`. */
  mode(): Promise<{ mode: Mode; usingLocalDatabase: boolean }> {
    return this.request('GET', '/api/database/mode');
  }

  /** `PUT /api/database/mode`. */
  setMode(mode: Mode): Promise<{ mode: Mode; usingLocalDatabase: boolean }> {
    return this.request('PUT', '/api/database/mode', { mode });
  }

  /** `GET /api/database/models`: counts and the last sync per model. */
  async models(): Promise<ModelSummary[]> {
    return (await this.request<{ models: ModelSummary[] }>('GET', '/api/database/models')).models;
  }

  /** `GET /api/database/conflicts`. */
  async conflicts(): Promise<Conflict[]> {
    return (await this.request<{ conflicts: Conflict[] }>('GET', '/api/database/conflicts')).conflicts;
  }

  /** `GET /api/database/conflicts/{model}/{key}`. */
  conflict(model: string, key: Key): Promise<Conflict> {
    return this.request('GET', `/api/database/conflicts/${encodeURIComponent(model)}/${keyPath(key)}`);
  }

  /** `POST …/resolve`: keep `'local'` or `'server'`, or `{ merged: row }`. */
  resolve(model: string, key: Key, resolution: Resolution): Promise<{ resolved: true; model: string; key: Key }> {
    const body = typeof resolution === 'string' ? { keep: resolution } : resolution;
    return this.request('POST', `/api/database/conflicts/${encodeURIComponent(model)}/${keyPath(key)}/resolve`, body);
  }

  /** `GET /api/database/log`: newest first. */
  log(paging?: Paging): Promise<Page & { entries: LogEntry[] }> {
    return this.request('GET', this.list('/api/database/log', paging));
  }

  /** `GET /api/database/pending`: oldest first. */
  pending(paging?: Paging): Promise<Page & { changes: Change[] }> {
    return this.request('GET', this.list('/api/database/pending', paging));
  }

  /** `GET /api/database/failed`. */
  failed(paging?: Paging): Promise<Page & { failed: Change[] }> {
    return this.request('GET', this.list('/api/database/failed', paging));
  }

  /** `POST …/retry`: queue a refused row again. */
  retry(model: string, key: Key): Promise<{ retried: true; model: string; key: Key }> {
    return this.request('POST', `/api/database/failed/${encodeURIComponent(model)}/${keyPath(key)}/retry`, {});
  }

  /** `POST …/discard`: give up a refused row's local change. */
  discard(
    model: string,
    key: Key,
  ): Promise<{ discarded: true; model: string; key: Key; row: Row | null; serverVersion: number | null }> {
    return this.request('POST', `/api/database/failed/${encodeURIComponent(model)}/${keyPath(key)}/discard`, {});
  }

  /** `GET /api/openapi.json`. */
  openapi(): Promise<Record<string, unknown>> {
    return this.request('GET', '/api/openapi.json');
  }

  /** `POST /api/models/{model}/{operation}` with Prisma's argument object. */
  run<T = unknown>(model: string, operation: Operation, args: object = {}): Promise<T> {
    return this.request('POST', `/api/models/${encodeURIComponent(model)}/${operation}`, args);
  }

  /** Prisma's operations on one model. */
  model<N extends ModelName>(model: N): ModelService<N> {
    const run = <T>(op: Operation, args: unknown): Promise<T> =>
      this.run<T>(model, op, (args ?? {}) as object);
    const count = async (args?: object): Promise<number> => {
      const n = await run<number | { _count?: number }>('count', args);
      return typeof n === 'number' ? n : Number(n?._count ?? 0);
    };
    // The methods are generic in their argument type; at run time they are
    // all the same call, so the object is typed once here.
    const service = {
      model,
      findMany: (args?: object) => run('findMany', args),
      findFirst: (args?: object) => run('findFirst', args),
      findUnique: (args: object) => run('findUnique', args),
      count,
      create: (arg: object) => run('create', isCreateArgs(arg) ? arg : { data: arg }),
      createMany: (args: object) => run('createMany', args),
      update: (args: object) => run('update', args),
      updateMany: (args: object) => run('updateMany', args),
      upsert: (args: object) => run('upsert', args),
      delete: (args: object) => run('delete', args),
      deleteMany: (args?: object) => run('deleteMany', args),
    };
    return service as unknown as ModelService<N>;
  }

  /** Reads the event stream once, until it ends, fails or `signal` aborts. */
  async *events(signal?: AbortSignal): AsyncGenerator<OutpostEvent, void, undefined> {
    const init: RequestInit = {
      method: 'GET',
      headers: { ...this.headers(false), Accept: 'text/event-stream' },
    };
    if (signal) init.signal = signal;
    if (this.credentials) init.credentials = this.credentials;
    const response = await this.fetchFn(`${this.url}/api/database/events`, init);
    if (!response.ok || !response.body) {
      throw new OutpostError(response.status, 'events_unavailable', `the event stream answered ${response.status}`);
    }
    yield* parseEvents(response.body);
  }

  /**
   * Calls `listener` for every live event; reconnects with a backoff when
   * the stream fails or ends (the node restarted, the network dropped).
   */
  subscribe(listener: (event: OutpostEvent) => void, options: SubscribeOptions = {}): Subscription {
    const controller = new AbortController();
    const base = options.retryMs ?? 1000;
    const loop = async () => {
      let delay = base;
      while (!controller.signal.aborted) {
        try {
          let opened = false;
          for await (const event of this.events(controller.signal)) {
            if (!opened) {
              opened = true;
              delay = base;
              options.onOpen?.();
            }
            listener(event);
          }
          if (!controller.signal.aborted) options.onError?.(new Error('the event stream ended'));
        } catch (e) {
          if (controller.signal.aborted) return;
          options.onError?.(e);
        }
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, delay);
          controller.signal.addEventListener('abort', () => {
            clearTimeout(t);
            resolve();
          });
        });
        delay = Math.min(delay * 2, 30_000);
      }
    };
    void loop();
    return { close: () => controller.abort() };
  }
}
