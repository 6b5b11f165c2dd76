import { Agent, request, type Dispatcher } from 'undici';
import { ApiError, isErrorBody, type ErrorCode } from './errors.js';
import { blake3Hex } from './hash.js';
import type {
  BatchOp,
  BatchResponse,
  BlockRef,
  ChangesPage,
  ChildrenPage,
  CommitRequest,
  CreateNodeRequest,
  DeviceInfo,
  HistoryPage,
  Manifest,
  NodeInfo,
  Role,
  ShareInfo,
  SharesPage,
  TrashPage,
  ServerConfig,
  UpdateNodeRequest,
  VersionInfo,
  WhoAmI,
} from './types.js';

export interface ClientOptions {
  /** Base URL of the server, e.g. http://127.0.0.1:7420 */
  server: string;
  token: string;
  /** Connections kept to the server (parallel block transfers). */
  connections?: number;
  dispatcher?: Dispatcher;
}

type Query = Record<string, string | number | undefined>;

const BLOCK_HEADERS_TIMEOUT_MS = 10_000;
const BLOCK_BODY_IDLE_MS = 30_000;

/** The typed HTTP client of the /v1 API (undici, keep-alive). Failures reject with ApiError. */
export class StratusClient {
  private readonly base: string;
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;

  constructor(private readonly opts: ClientOptions) {
    this.base = opts.server.replace(/\/+$/, '');
    this.ownsDispatcher = !opts.dispatcher;
    this.dispatcher = opts.dispatcher ?? new Agent({ connections: opts.connections ?? 16, keepAliveTimeout: 30_000, bodyTimeout: 0, headersTimeout: 60_000 });
  }

  async close(): Promise<void> {
    if (this.ownsDispatcher) await this.dispatcher.close();
  }

  private url(path: string, query?: Query): string {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) params.set(k, String(v));
    const qs = params.toString();
    return `${this.base}${path}${qs ? `?${qs}` : ''}`;
  }

  private async json<T>(method: Dispatcher.HttpMethod, path: string, body?: unknown, query?: Query): Promise<T> {
    const res = await request(this.url(path, query), {
      method,
      dispatcher: this.dispatcher,
      headers: { authorization: `Bearer ${this.opts.token}`, ...(body !== undefined && { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.body.text();
    // An error page of something in between (a balancer's 503) is an error of its status, not a parse failure.
    if (res.statusCode >= 400) throw toApiError(res.statusCode, safeJson(Buffer.from(text)), res.headers);
    const parsed: unknown = text ? JSON.parse(text) : undefined;
    return parsed as T;
  }

  config(): Promise<ServerConfig> {
    return this.json('GET', '/v1/config');
  }
  whoami(): Promise<WhoAmI> {
    return this.json('GET', '/v1/whoami');
  }
  devices(): Promise<{ devices: DeviceInfo[] }> {
    return this.json('GET', '/v1/devices');
  }
  createDevice(name: string): Promise<{ device: DeviceInfo; token: string }> {
    return this.json('POST', '/v1/devices', { name });
  }
  revokeDevice(id: string): Promise<DeviceInfo> {
    return this.json('DELETE', `/v1/devices/${encodeURIComponent(id)}`);
  }

  root(): Promise<NodeInfo> {
    return this.json('GET', '/v1/nodes/root');
  }
  node(id: string): Promise<NodeInfo> {
    return this.json('GET', `/v1/nodes/${encodeURIComponent(id)}`);
  }
  children(id: string, page: { after?: string; limit?: number } = {}): Promise<ChildrenPage> {
    return this.json('GET', `/v1/nodes/${encodeURIComponent(id)}/children`, undefined, page);
  }
  /** Every child of a folder, following pages. */
  async allChildren(id: string, pageSize?: number): Promise<NodeInfo[]> {
    const out: NodeInfo[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.children(id, { after, limit: pageSize });
      out.push(...page.children);
      if (page.next === null) return out;
      after = page.next;
    }
  }
  create(req: CreateNodeRequest): Promise<NodeInfo> {
    return this.json('POST', '/v1/nodes', req);
  }
  update(id: string, req: UpdateNodeRequest): Promise<NodeInfo> {
    return this.json('PATCH', `/v1/nodes/${encodeURIComponent(id)}`, req);
  }
  /**
   * To the trash; with `ifVersion`, only if the file's head is still that version (409
   * stale_version otherwise); with `ifEmpty`, only a folder without live children (409 not_empty).
   */
  remove(id: string, opts: { ifVersion?: number; ifEmpty?: boolean } = {}): Promise<NodeInfo> {
    const query = { ...(opts.ifVersion !== undefined && { if_version: opts.ifVersion }), ...(opts.ifEmpty && { if_empty: 'true' }) };
    return this.json('DELETE', `/v1/nodes/${encodeURIComponent(id)}`, undefined, query);
  }
  /**
   * Several creates, updates and deletes in one request and one transaction on the server: each
   * op succeeds or fails on its own, in order (see BatchOp for `$N` ids), as separate requests would.
   */
  batch(ops: BatchOp[]): Promise<BatchResponse> {
    return this.json('POST', '/v1/batch', { ops });
  }
  restore(id: string, to: { parent_id?: string; name?: string } = {}): Promise<NodeInfo> {
    return this.json('POST', `/v1/nodes/${encodeURIComponent(id)}/restore`, to);
  }

  /** What the caller can restore from the trash, newest first. */
  trash(page: { after?: string; limit?: number } = {}): Promise<TrashPage> {
    return this.json('GET', '/v1/trash', undefined, page);
  }
  /** Purges every item of the caller's trash now (what they own); returns how many items went. */
  emptyTrash(): Promise<{ purged: number }> {
    return this.json('DELETE', '/v1/trash');
  }
  /** A folder's children as they were at `at` (ms since the epoch or ISO 8601), from the journal; `parentId` omitted: the caller's root. */
  history(at: number | string, parentId?: string, page: { after?: string; limit?: number } = {}): Promise<HistoryPage> {
    return this.json('GET', '/v1/history', undefined, { at, parent_id: parentId, ...page });
  }

  versions(id: string, page: { before?: number; limit?: number } = {}): Promise<{ versions: VersionInfo[]; next: number | null }> {
    return this.json('GET', `/v1/nodes/${encodeURIComponent(id)}/versions`, undefined, page);
  }
  manifest(id: string, version: number | 'head' = 'head'): Promise<Manifest> {
    return this.json('GET', `/v1/nodes/${encodeURIComponent(id)}/versions/${version}`);
  }
  commit(id: string, req: CommitRequest): Promise<Manifest> {
    return this.json('POST', `/v1/nodes/${encodeURIComponent(id)}/versions`, req);
  }
  restoreVersion(id: string, version: number): Promise<Manifest> {
    return this.json('POST', `/v1/nodes/${encodeURIComponent(id)}/versions/${version}/restore`);
  }

  checkBlocks(hashes: string[]): Promise<{ missing: string[] }> {
    return this.json('POST', '/v1/blocks/check', { hashes });
  }
  async putBlock(hash: string, bytes: Uint8Array): Promise<BlockRef> {
    const res = await request(this.url(`/v1/blocks/${hash}`), {
      method: 'PUT',
      dispatcher: this.dispatcher,
      headers: { authorization: `Bearer ${this.opts.token}`, 'content-type': 'application/octet-stream', 'content-length': String(bytes.length) },
      body: bytes,
    });
    const text = await res.body.text();
    // An error page of something in between (a balancer's 503) is an error of its status, not a parse failure.
    if (res.statusCode >= 400) throw toApiError(res.statusCode, safeJson(Buffer.from(text)), res.headers);
    const parsed: unknown = text ? JSON.parse(text) : undefined;
    return parsed as BlockRef;
  }
  /**
   * A block, or `length` bytes of it from `offset` (fewer at the end of the block). A server whose
   * blocks live in a store that signs URLs answers with one (307): the bytes are read from the
   * store itself. A URL that fails (expired, foreign, the store unreachable) or gives a whole block
   * that does not hash to its id is replaced by a fresh one, then by the bytes through the server.
   */
  async getBlock(hash: string, range?: { offset: number; length: number }): Promise<Buffer> {
    // `bytes=N-(N-1)` is not a valid range; a server answers it with the whole block.
    if (range?.length === 0) return Buffer.alloc(0);
    for (const direct of [false, false, true]) {
      const got = await this.blockFromServer(hash, range, direct);
      if (Buffer.isBuffer(got)) return got;
      const bytes = await this.blockFromUrl(got.location, range).catch(() => undefined);
      if (bytes && (range !== undefined || blake3Hex(bytes) === hash)) return bytes;
    }
    throw new Error(`block ${hash}: the server sent it elsewhere even when asked for it directly`);
  }

  /** The server's answer to a block request: the bytes, or where to read them (a signed URL). */
  private async blockFromServer(hash: string, range: { offset: number; length: number } | undefined, direct: boolean): Promise<Buffer | { location: string }> {
    const res = await request(this.url(`/v1/blocks/${hash}`, direct ? { direct: 1 } : undefined), {
      method: 'GET',
      dispatcher: this.dispatcher,
      // A server that answers at all answers a block's headers at once: a silent network (packets
      // dropped) is an error within seconds, not a reader stuck for a minute. Slow bodies are fine
      // as long as bytes keep coming.
      headersTimeout: BLOCK_HEADERS_TIMEOUT_MS,
      bodyTimeout: BLOCK_BODY_IDLE_MS,
      headers: {
        authorization: `Bearer ${this.opts.token}`,
        ...(range && { range: rangeHeader(range) }),
      },
    });
    const location = res.headers.location;
    if (res.statusCode === 307 && typeof location === 'string') {
      await res.body.dump();
      return { location };
    }
    return readBlockBody(res, range);
  }

  /** The bytes at a signed URL (no credentials of ours go there). */
  private async blockFromUrl(location: string, range: { offset: number; length: number } | undefined): Promise<Buffer> {
    const res = await request(location, {
      method: 'GET',
      headersTimeout: BLOCK_HEADERS_TIMEOUT_MS,
      bodyTimeout: BLOCK_BODY_IDLE_MS,
      headers: range ? { range: rangeHeader(range) } : {},
    });
    return readBlockBody(res, range);
  }

  /** The changes after `cursor` (opaque, as the server gave it; none: from the start). */
  changes(cursor: string | undefined, limit?: number): Promise<ChangesPage> {
    return this.json('GET', '/v1/changes', undefined, { cursor, limit });
  }
  changesHead(): Promise<{ cursor: string }> {
    return this.json('GET', '/v1/changes/head');
  }

  /** Grants `user` a role on a node (or changes it); owners only. */
  share(nodeId: string, grant: { user: string; role: Role; expires_at?: number } | { link: true; expires_at?: number }): Promise<ShareInfo> {
    return this.json('POST', `/v1/nodes/${encodeURIComponent(nodeId)}/shares`, grant);
  }
  nodeShares(nodeId: string): Promise<{ shares: ShareInfo[] }> {
    return this.json('GET', `/v1/nodes/${encodeURIComponent(nodeId)}/shares`);
  }
  unshare(nodeId: string, shareId: string): Promise<ShareInfo> {
    return this.json('DELETE', `/v1/nodes/${encodeURIComponent(nodeId)}/shares/${encodeURIComponent(shareId)}`);
  }
  shares(): Promise<SharesPage> {
    return this.json('GET', '/v1/shares');
  }
}

function rangeHeader(range: { offset: number; length: number }): string {
  return `bytes=${range.offset}-${range.offset + range.length - 1}`;
}

/** A block response's bytes (a 4xx/5xx as an ApiError); a whole block sent for a range is cut down to it. */
async function readBlockBody(res: Dispatcher.ResponseData, range: { offset: number; length: number } | undefined): Promise<Buffer> {
  const bytes = Buffer.from(await res.body.arrayBuffer());
  if (res.statusCode >= 400) throw toApiError(res.statusCode, safeJson(bytes), res.headers);
  // A server (or proxy) may ignore Range and send the whole block with 200: cut the range out.
  if (range && res.statusCode === 200) return bytes.subarray(range.offset, range.offset + range.length);
  return bytes;
}

function safeJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
}

/**
 * The ApiError of a failed response. A Retry-After header (seconds; 429, 503, 507) lands in
 * `extra.retry_after_s` unless the body already says it, also when a proxy answered without the
 * API's error body.
 */
function toApiError(status: number, body: unknown, headers: Record<string, string | string[] | undefined> = {}): ApiError {
  const header = headers['retry-after'];
  const retryAfterS = typeof header === 'string' && /^\d{1,9}$/.test(header.trim()) ? Number(header.trim()) : undefined;
  const retry = retryAfterS === undefined ? {} : { retry_after_s: retryAfterS };
  if (isErrorBody(body)) {
    const { code, message, ...extra } = body.error;
    return new ApiError(code as ErrorCode, message, { ...retry, ...extra }, status);
  }
  const code: ErrorCode = status === 429 ? 'too_many_requests' : status === 507 ? 'insufficient_storage' : status >= 500 ? 'internal' : 'bad_request';
  return new ApiError(code, `HTTP ${status}`, retry, status);
}

/** The change-hint WebSocket of a server: http→ws, https→wss, path /v1/events (DESIGN §5). */
export function eventsUrl(server: string): string {
  const url = new URL(server);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/v1/events`;
  url.search = '';
  url.hash = '';
  return url.toString();

}
