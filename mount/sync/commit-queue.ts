import { EventEmitter } from 'node:events';
import { open, rm } from 'node:fs/promises';
import type { BlockCache } from '../../cache/block-cache.js';
import { ApiError } from '../../protocol/errors.js';
import type { StratusClient } from '../../protocol/client.js';
import type { BlockRef, CreateNodeRequest, Manifest, NodeInfo, ServerConfig } from '../../protocol/types.js';
import type { ChunkerPool } from '../chunker/pool.js';
import type { LocalNode, PendingCommit, PendingCreate, PendingOp, StateStore } from '../state/store.js';
import { isTransient, retryAfterMs } from '../vfs/errors.js';
import { isLocalId, type Tree } from '../vfs/tree.js';
import { conflictedCopyName } from './conflict-name.js';

export interface CommitQueueOptions {
  store: StateStore;
  client: StratusClient;
  pool: ChunkerPool;
  cache: BlockCache;
  tree: Tree;
  config: ServerConfig;
  device: string;
  /** Files committed at once (different files); blocks uploaded at once per file. */
  parallelCommits?: number;
  parallelUploads?: number;
  log?: (msg: string) => void;
  /** First retry delay after a transient failure (doubles up to 30 s). */
  retryMs?: number;
}

export interface CommitResult {
  entry: PendingCommit;
  nodeId: string;
  manifest: Manifest;
  conflictedCopy?: string;
}

/**
 * The durable queue of closed files waiting to become versions (invariants 5 and 6). Each entry is
 * on disk (state store row + staging file) before `release` returns; the queue chunks and hashes in
 * workers, asks which blocks the server lacks, uploads only those, and commits with the base version.
 * A stale base keeps the local bytes as a conflicted copy. Transient failures retry with backoff;
 * entries survive restarts and resume with the blocks still missing.
 *
 * Nodes made offline (ids `local:…`) are created on the server first, their folders before them;
 * a name taken meanwhile keeps both (ours becomes a conflicted copy; folders of one name merge),
 * and a folder deleted meanwhile is made again on the way.
 *
 * Events: `committed` (CommitResult), `changed` (the queue's size changed), `remapped` (local id,
 * NodeInfo) when an offline node got its server id, `error` is never emitted: failures are logged
 * and retried.
 */
export class CommitQueue extends EventEmitter {
  private entries: PendingCommit[] = [];
  /** The newest entry of each node (getattr asks for it on every call). */
  private readonly newest = new Map<string, PendingCommit>();
  /** Server ids of nodes this mount made offline, by their local id. */
  private readonly mappedIds = new Map<string, string>();
  private readonly inFlight = new Map<number, Promise<void>>();
  private readonly cancelled = new Set<number>();
  private readonly retryAt = new Map<number, number>();
  private readonly failures = new Map<number, number>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Staging files still read by open handles: not deleted until released. */
  private readonly stagingUsers = new Map<string, number>();
  private readonly orphanStaging = new Set<string>();
  /** Bytes of the cache bound each entry holds (released when it leaves the queue). */
  private readonly reserved = new Map<number, number>();
  /** mtimes set while an entry's commit was in flight: applied after it lands. */
  private readonly lateMtime = new Map<string, number>();
  /**
   * Version each node got from this mount's latest commit. Every local edit of a node is made on
   * top of the previous local one, so an entry's base is at least this (no false conflict when a
   * file is saved again while its previous save is still on the wire).
   */
  private readonly lastCommitted = new Map<string, number>();
  /** Nodes whose queued content waits for the file's release before it is committed (see hold). */
  private readonly held = new Set<string>();
  private draining = false;
  readonly stats = { commits: 0, conflicts: 0, uploadedBlocks: 0, uploadedBytes: 0, checkedBlocks: 0 };

  constructor(private readonly opts: CommitQueueOptions) {
    super();
    opts.tree.hasQueuedOp = (id) => this.hasOp(id);
  }

  /** A rename or delete of the node waits in the queue. */
  hasOp(nodeId: string): boolean {
    return this.entries.some((e) => e.op && e.nodeId === nodeId);
  }

  async start(): Promise<void> {
    this.entries = await this.opts.store.listPending();
    this.reindex();
    // Queued bytes count against the cache bound until committed (best effort after a restart).
    for (const e of this.entries) {
      await this.opts.cache.reserve(e.size).then(
        () => this.reserved.set(e.id, e.size),
        () => undefined,
      );
    }
    this.kick();
  }

  get pendingCount(): number {
    return this.entries.length;
  }

  get pendingBytes(): number {
    return this.entries.reduce((a, e) => a + e.size, 0);
  }

  list(): readonly PendingCommit[] {
    return this.entries;
  }

  /** The newest queued content of a node, if any (what a reader must see until it is committed). */
  latest(nodeId: string): PendingCommit | undefined {
    return this.newest.get(nodeId);
  }

  /** Tries what waits on a retry timer at once (the server is reachable again). */
  retryNow(): void {
    this.retryAt.clear();
    this.kick();
  }

  /** The version this mount's latest commit of a node made (0: none this session). */
  ownVersion(nodeId: string): number {
    return this.lastCommitted.get(nodeId) ?? 0;
  }

  /** The server id a node made offline got (its local id until then). */
  mapped(nodeId: string): string {
    return this.mappedIds.get(nodeId) ?? nodeId;
  }

  private reindex(): void {
    this.newest.clear();
    // Content only: a queued rename, delete or folder creation says nothing about a file's bytes.
    for (const e of this.entries) if (e.staging !== '' && !e.op) this.newest.set(e.nodeId, e);
  }

  /**
   * Keeps a node's queued content from starting to commit until `unhold`: close(2) of one
   * descriptor queued it (durable), but the file is still open through another (a shell's
   * `cmd > file` closes its first descriptor before `cmd` writes through the dup'd one). The next
   * close supersedes the held entry, so the server gets one version, not an empty one first.
   * Holds live in memory only: after a restart every entry commits. A drain ignores them.
   */
  hold(nodeId: string): void {
    if (!this.draining) this.held.add(nodeId);
  }

  /** The file was released (or is about to be renamed): its queued content may commit now. */
  unhold(nodeId: string): void {
    if (this.held.delete(nodeId)) this.kick();
  }

  /** Queues a closed file. Older entries of the same node not yet started are superseded (coalesced). */
  async enqueue(input: Omit<PendingCommit, 'id' | 'createdAt'> & { reserved?: number }): Promise<PendingCommit> {
    const { reserved = 0, ...entry } = input;
    // Only content is coalesced: a queued rename or delete keeps its place in the node's order.
    const superseded = this.entries.filter((e) => e.nodeId === entry.nodeId && !this.inFlight.has(e.id) && e.staging !== '');
    // The bytes of a superseded entry were based on the same local history: the new one keeps its base
    // (and, for a node made offline, the creation it still owes the server).
    const base = superseded[0]?.baseVersion ?? entry.baseVersion;
    const create = superseded.find((e) => e.create)?.create ?? entry.create;
    const added = await this.opts.store.addPending({ ...entry, baseVersion: base, createdAt: Date.now(), ...(create && { create }) }, superseded.map((e) => e.id));
    const gone = new Set(superseded.map((e) => e.id));
    this.entries = this.entries.filter((e) => !gone.has(e.id));
    this.entries.push(added);
    // The node got its server id while this entry was being written: it follows.
    const mapped = this.mappedIds.get(added.nodeId);
    if (mapped !== undefined) {
      added.nodeId = mapped;
      delete added.create;
      await this.opts.store.updatePending(added.id, { nodeId: mapped, create: null });
    }
    this.reindex();
    this.reserved.set(added.id, reserved);
    for (const e of superseded) {
      this.releaseReservation(e.id);
      await this.dropStaging(e.staging);
    }
    this.emit('changed');
    this.kick();
    return added;
  }

  /** Queues the creation of a folder or link made offline (no content: its entry has no staging file). */
  async enqueueCreate(nodeId: string, create: PendingCreate, mtime: number): Promise<void> {
    const added = await this.opts.store.addPending({ nodeId, baseVersion: 0, staging: '', size: 0, mtime, createdAt: Date.now(), create });
    this.entries.push(added);
    this.reindex();
    this.emit('changed');
    this.kick();
  }

  /**
   * Queues a delete or a move of a node the server has, made while it was unreachable; it runs in
   * order with the node's content. A delete carries the version it saw (an edit made elsewhere
   * meanwhile survives it) and a folder's delete only takes an empty folder.
   */
  async enqueueOp(nodeId: string, op: PendingOp): Promise<void> {
    const added = await this.opts.store.addPending({ nodeId, baseVersion: 0, staging: '', size: 0, mtime: Date.now(), createdAt: Date.now(), op });
    this.entries.push(added);
    this.reindex();
    this.emit('changed');
    this.kick();
  }

  /** Something of the node is being sent right now. */
  sending(nodeId: string): boolean {
    return this.entries.some((e) => e.nodeId === nodeId && this.inFlight.has(e.id));
  }

  /**
   * The queued content of a file made offline becomes content of another node (a rename over a
   * file the server has), on top of `baseVersion`; its creation is dropped.
   */
  async retarget(fromId: string, toId: string, baseVersion: number): Promise<void> {
    for (const e of this.entries) {
      if (e.nodeId !== fromId) continue;
      e.nodeId = toId;
      e.baseVersion = baseVersion;
      delete e.create;
      await this.opts.store.updatePending(e.id, { nodeId: toId, baseVersion, create: null });
    }
    this.reindex();
    this.emit('changed');
    this.kick();
  }

  /** A node made offline was renamed or moved here before the server knew it: its creation follows. */
  async renameLocal(nodeId: string, parentId: string, name: string): Promise<void> {
    for (const e of this.entries) {
      if (e.nodeId !== nodeId || !e.create) continue;
      e.create = { ...e.create, parentId, name };
      await this.opts.store.updatePending(e.id, { create: e.create });
    }
  }

  /** Forget a node's queued content (the file was deleted here). An upload in flight is abandoned. */
  async dropNode(nodeId: string): Promise<void> {
    for (const e of this.entries.filter((x) => x.nodeId === nodeId)) {
      if (this.inFlight.has(e.id)) {
        this.cancelled.add(e.id);
        continue;
      }
      await this.remove(e);
    }
  }

  /** Resolves once nothing of this node is queued (e.g. before a rename that must carry its content). */
  async waitFor(nodeId: string, timeoutMs = 120_000): Promise<void> {
    this.unhold(nodeId);
    await this.waitUntil(() => !this.entries.some((e) => e.nodeId === nodeId), timeoutMs);
  }

  /** Waits for the queue to empty; false on timeout. `progress` is told the count whenever it changes. */
  async drain(timeoutMs: number, progress?: (count: number, bytes: number) => void): Promise<boolean> {
    progress?.(this.pendingCount, this.pendingBytes);
    const onChange = () => progress?.(this.pendingCount, this.pendingBytes);
    this.on('changed', onChange);
    try {
      // Retry at once whatever waits on a backoff timer: we are about to stop.
      this.retryAt.clear();
      this.draining = true;
      this.held.clear();
      this.kick();
      return await this.waitUntil(() => this.entries.length === 0, timeoutMs).then(
        () => true,
        () => false,
      );
    } finally {
      this.off('changed', onChange);
    }
  }

  /** A new mtime for a node's queued content (`touch`, `cp -p` after the close). */
  async setMtime(nodeId: string, mtime: number): Promise<void> {
    for (const e of this.entries) {
      if (e.nodeId !== nodeId) continue;
      e.mtime = mtime;
      await this.opts.store.updatePending(e.id, { mtime });
      if (this.inFlight.has(e.id)) this.lateMtime.set(nodeId, mtime);
    }
  }

  /** Makes the queue durable against a power cut (fsync of the state store). */
  async sync(): Promise<void> {
    await this.opts.store.sync();
  }

  private releaseReservation(id: number): void {
    const n = this.reserved.get(id);
    this.reserved.delete(id);
    if (n) this.emit('removed', n);
  }

  useStaging(path: string): void {
    this.stagingUsers.set(path, (this.stagingUsers.get(path) ?? 0) + 1);
  }

  async releaseStaging(path: string): Promise<void> {
    const n = (this.stagingUsers.get(path) ?? 1) - 1;
    if (n > 0) {
      this.stagingUsers.set(path, n);
      return;
    }
    this.stagingUsers.delete(path);
    if (this.orphanStaging.delete(path)) await rm(path, { force: true });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await Promise.allSettled([...this.inFlight.values()]);
  }

  private waitUntil(cond: () => boolean, timeoutMs: number): Promise<void> {
    if (cond()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onChange = () => {
        if (!cond()) return;
        cleanup();
        resolve();
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`commit queue: still ${this.entries.length} pending after ${timeoutMs} ms`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.off('changed', onChange);
      };
      this.on('changed', onChange);
    });
  }

  private kick(): void {
    if (this.stopped) return;
    const max = this.opts.parallelCommits ?? 2;
    const now = Date.now();
    const busyNodes = new Set<string>();
    for (const id of this.inFlight.keys()) {
      const e = this.entries.find((x) => x.id === id);
      if (e) busyNodes.add(e.nodeId);
    }
    let nextRetry = Infinity;
    // Creations and renames/deletes made offline go one at a time, in the order they were made:
    // they depend on each other's names (`rm f; echo new > f`, `mv f f.bak; mv f.new f`).
    let laneTaken = false;
    for (const e of this.entries) {
      if (this.inFlight.size >= max) break;
      const structural = e.op !== undefined || e.create !== undefined;
      // One that waits for its folder (made offline after it, then moved into) lets that folder go first.
      const waits = this.waitsForFolder(e);
      const laneBusy = structural && laneTaken;
      if (structural && !waits) laneTaken = true;
      if (laneBusy || waits || this.inFlight.has(e.id) || busyNodes.has(e.nodeId) || this.held.has(e.nodeId)) {
        busyNodes.add(e.nodeId); // later entries of a node wait for earlier ones
        continue;
      }
      const at = this.retryAt.get(e.id) ?? 0;
      if (at > now) {
        nextRetry = Math.min(nextRetry, at);
        busyNodes.add(e.nodeId);
        continue;
      }
      busyNodes.add(e.nodeId);
      const p = this.process(e).finally(() => {
        this.inFlight.delete(e.id);
        this.kick();
      });
      this.inFlight.set(e.id, p);
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (nextRetry !== Infinity) this.timer = setTimeout(() => this.kick(), Math.max(0, nextRetry - Date.now())).unref();
  }

  /** A node made offline inside a folder also made offline waits until the folder has its server id. */
  private waitsForFolder(e: PendingCommit): boolean {
    if (e.op?.kind === 'move') return isLocalId(this.mapped(e.op.parentId));
    if (!e.create) return false;
    const parent = this.opts.tree.get(e.nodeId)?.parentId ?? e.create.parentId;
    return isLocalId(this.mapped(parent));
  }

  private async process(entry: PendingCommit): Promise<void> {
    let result: CommitResult | undefined;
    try {
      if (entry.create) await this.createOnServer(entry);
      if (entry.op) {
        await this.runOp(entry, entry.op);
        await this.remove(entry);
        return;
      }
      if (!entry.staging) {
        // A folder or link made offline: created now, nothing more to send.
        await this.remove(entry);
        return;
      }
      result = await this.commit(entry);
    } catch (err) {
      if (this.cancelled.has(entry.id)) {
        await this.remove(entry);
        return;
      }
      const n = (this.failures.get(entry.id) ?? 0) + 1;
      this.failures.set(entry.id, n);
      const backoff = Math.min(30_000, (this.opts.retryMs ?? 500) * 2 ** (n - 1)) * (0.75 + Math.random() * 0.5);
      // A server that says when to come back (429 rate limit, 507 full disk) is not asked sooner.
      const delay = Math.max(backoff, retryAfterMs(err));
      this.retryAt.set(entry.id, Date.now() + delay);
      const refused = isTransient(err) ? '' : ' (refused by the server; its bytes stay queued)';
      this.opts.log?.(`commit of ${entry.nodeId} failed: ${(err as Error).message}${refused}; retrying in ${Math.round(delay)} ms`);
      return;
    }
    // Committed: nothing below may send it again (a retry would be a stale base, i.e. a false conflict).
    try {
      if (result) await this.afterCommit(entry, result);
    } catch (err) {
      this.opts.log?.(`after committing ${entry.nodeId}: ${(err as Error).message}`);
    }
    // An mtime set (touch, cp -p) while this commit was on the wire: set it now that it landed,
    // before the entry leaves the queue (a drain that resolves means the server has it). A later
    // entry of the node carries the mtime itself (and its own, newer one if written since: the late
    // mtime is forgotten, else it would be set over that entry's once it lands). Loops: utimens may
    // come again meanwhile.
    const later = () => this.entries.some((e) => e.id !== entry.id && e.nodeId === entry.nodeId);
    if (later()) this.lateMtime.delete(entry.nodeId);
    let late: number | undefined;
    while (result && (late = this.lateMtime.get(entry.nodeId)) !== undefined && !later()) {
      this.lateMtime.delete(entry.nodeId);
      try {
        const info = await this.opts.client.update(result.nodeId, { mtime: late });
        this.opts.tree.patch(info.id, { mtime: info.mtime });
      } catch (err) {
        this.opts.log?.(`setting mtime of ${result.nodeId}: ${(err as Error).message}`);
      }
    }
    await this.remove(entry);
  }

  private async afterCommit(entry: PendingCommit, result: CommitResult): Promise<void> {
    this.stats.commits++;
    this.lastCommitted.set(result.nodeId, result.manifest.version);
    // Later local edits of this file were made on top of this one.
    for (const later of this.entries) {
      if (later.id === entry.id || later.nodeId !== entry.nodeId) continue;
      later.baseVersion = result.manifest.version;
      later.nodeId = result.nodeId;
      await this.opts.store.updatePending(later.id, { baseVersion: later.baseVersion, nodeId: later.nodeId });
    }
    this.reindex();
    this.emit('committed', result);
  }

  /** One attempt at committing an entry; undefined when it was cancelled meanwhile. */
  private async commit(entry: PendingCommit): Promise<CommitResult | undefined> {
    const { client, pool, config } = this.opts;
    const blocks = await pool.chunkFile(entry.staging, config.chunking);
    await this.uploadMissing(entry, blocks);
    if (this.cancelled.has(entry.id)) return undefined;
    const refs: BlockRef[] = blocks.map((b) => ({ hash: b.hash, size: b.size }));
    const base = Math.max(entry.baseVersion, this.lastCommitted.get(entry.nodeId) ?? 0);
    const req = { base_version: base, blocks: refs, size: entry.size, mtime: entry.mtime };
    try {
      const manifest = await client.commit(entry.nodeId, req);
      this.applyCommitted(entry.nodeId, manifest);
      return { entry, nodeId: entry.nodeId, manifest };
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      if (err.code === 'stale_version') {
        // An earlier attempt may have landed with its reply lost (then a crash or a retry): the
        // head made on our base with our exact content is this commit, not a conflict.
        const head = await client.manifest(entry.nodeId, 'head');
        if (head.base_version === base && head.size === entry.size && sameBlocks(head.blocks, refs)) {
          this.applyCommitted(entry.nodeId, head);
          return { entry, nodeId: entry.nodeId, manifest: head };
        }
      }
      if (err.code === 'stale_version' || err.code === 'node_deleted' || err.code === 'not_found') {
        return this.keepAsCopy(entry, refs, err.code === 'stale_version');
      }
      throw err;
    }
  }

  private async uploadMissing(entry: PendingCommit, blocks: (BlockRef & { offset: number })[]): Promise<void> {
    const { client, config } = this.opts;
    const unique = new Map<string, BlockRef & { offset: number }>();
    for (const b of blocks) if (!unique.has(b.hash)) unique.set(b.hash, b);
    const hashes = [...unique.keys()];
    const missing: string[] = [];
    const step = Math.max(1, config.limits.max_check_hashes);
    for (let i = 0; i < hashes.length; i += step) {
      const res = await client.checkBlocks(hashes.slice(i, i + step));
      missing.push(...res.missing);
    }
    this.stats.checkedBlocks += hashes.length;
    if (!missing.length) return;
    const fh = await open(entry.staging, 'r');
    try {
      let next = 0;
      const worker = async () => {
        while (next < missing.length && !this.cancelled.has(entry.id)) {
          const b = unique.get(missing[next++]!)!;
          const bytes = Buffer.allocUnsafe(b.size);
          const { bytesRead } = await fh.read(bytes, 0, b.size, b.offset);
          if (bytesRead !== b.size) throw new Error(`staging file ${entry.staging} is shorter than its blocks`);
          await client.putBlock(b.hash, bytes);
          this.stats.uploadedBlocks++;
          this.stats.uploadedBytes += b.size;
          // What was just written is likely read next: keep it warm (best effort).
          await this.opts.cache.put(b.hash, bytes).catch(() => undefined);
        }
      };
      await Promise.all(Array.from({ length: Math.min(this.opts.parallelUploads ?? 4, missing.length) }, worker));
    } finally {
      await fh.close();
    }
  }

  /** Invariant 6: the head moved (or the file went away) — keep these bytes under a conflicted-copy name. */
  private async keepAsCopy(entry: PendingCommit, refs: BlockRef[], stale: boolean): Promise<CommitResult> {
    const { client, tree } = this.opts;
    let original = tree.get(entry.nodeId);
    if (!original) {
      try {
        const info = await client.node(entry.nodeId);
        original = { id: info.id, parentId: info.parent_id, name: info.name, kind: info.kind, headVersion: info.head_version, size: info.size, mtime: info.mtime, mode: info.mode, listed: false };
      } catch {
        original = undefined;
      }
    }
    // The folder may have gone too (deleted elsewhere): it is made again, so the file keeps its path.
    const parentId = await this.liveFolder(original?.parentId ?? tree.rootId);
    const baseName = original?.name ?? `recovered ${entry.nodeId}`;
    let created;
    for (let attempt = 0; ; attempt++) {
      const name = stale || attempt > 0 ? conflictedCopyName(baseName, this.opts.device, new Date(entry.createdAt), stale ? attempt : attempt - 1) : baseName;
      try {
        created = await client.create({ parent_id: parentId, name, kind: 'file', mtime: entry.mtime, ...(original && { mode: original.mode }) });
        break;
      } catch (err) {
        if (err instanceof ApiError && err.code === 'exists' && attempt < 20) continue;
        throw err;
      }
    }
    const manifest = await client.commit(created.id, { base_version: 0, blocks: refs, size: entry.size, mtime: entry.mtime });
    tree.applyInfo({ ...created, head_version: manifest.version, size: manifest.size, mtime: manifest.mtime });
    this.stats.conflicts++;
    this.opts.log?.(`kept local edit of ${baseName} as ${created.name}`);
    if (stale) {
      // The file itself shows the server's head now.
      await client.node(entry.nodeId).then((info) => tree.applyInfo(info)).catch(() => undefined);
    }
    return { entry, nodeId: created.id, manifest, conflictedCopy: created.name };
  }

  /**
   * Creates a node made offline on the server and gives it its server id everywhere. A name taken
   * meanwhile: a folder of that name is joined (folders merge), an empty file of that name whose
   * content is still on its way is taken over (its writer's commit then becomes the conflicted
   * copy), a link with the same target is the same link; anything else keeps ours under a
   * conflicted-copy name — both are kept.
   */
  private async createOnServer(entry: PendingCommit): Promise<void> {
    const { client, tree } = this.opts;
    const create = entry.create!;
    const local = tree.get(entry.nodeId);
    const sentParent = local?.parentId ?? create.parentId;
    const parentId = await this.liveFolder(this.mapped(sentParent));
    const name = local?.name ?? create.name;
    let info: NodeInfo | undefined;
    let joined = false;
    for (let attempt = 0; !info; attempt++) {
      try {
        const tryName = attempt === 0 ? name : conflictedCopyName(name, this.opts.device, new Date(entry.createdAt), attempt - 1);
        info = await client.create({ parent_id: parentId, name: tryName, ...createFields(create, local, entry.mtime) });
      } catch (err) {
        if (!(err instanceof ApiError && err.code === 'exists') || attempt >= 20) throw err;
        if (attempt > 0) continue;
        const existing = typeof err.extra.node_id === 'string' ? await client.node(err.extra.node_id).catch(() => undefined) : undefined;
        if (existing && existing.deleted_at === null && existing.kind === create.kind && joinable(create, existing)) {
          info = existing;
          joined = true;
        }
      }
    }
    if (this.cancelled.has(entry.id)) {
      // Deleted here while its creation was on the wire: it goes again (the entry is dropped by the caller).
      this.mappedIds.set(entry.nodeId, info.id);
      if (!joined) await client.remove(info.id).catch(() => undefined);
      throw new Error(`${entry.nodeId} was deleted while it was being created`);
    }
    const now = tree.get(entry.nodeId);
    await this.remap(entry.nodeId, info, joined);
    // Renamed or moved here while its creation was on the wire: the move follows it, in order.
    if (now && (now.name !== name || now.parentId !== sentParent)) {
      await this.enqueueOp(info.id, { kind: 'move', parentId: now.parentId!, name: now.name });
      tree.patch(info.id, { parentId: this.mapped(now.parentId!), name: now.name });
    }
  }

  /** A node made offline now exists on the server as `info`: every entry, the tree and listeners use its id. */
  private async remap(localId: string, info: NodeInfo, joined: boolean): Promise<void> {
    this.mappedIds.set(localId, info.id);
    for (const e of this.entries) {
      if (e.nodeId === localId) {
        e.nodeId = info.id;
        delete e.create;
        await this.opts.store.updatePending(e.id, { nodeId: info.id, create: null });
      } else if (e.create?.parentId === localId) {
        e.create = { ...e.create, parentId: info.id };
        await this.opts.store.updatePending(e.id, { create: e.create });
      } else if (e.op?.kind === 'move' && e.op.parentId === localId) {
        e.op = { ...e.op, parentId: info.id };
        await this.opts.store.updatePending(e.id, { op: e.op });
      }
    }
    this.reindex();
    this.opts.tree.remap(localId, info, joined);
    this.emit('remapped', localId, info);
    this.kick();
  }

  /** Sends a delete or move made offline. What the server refuses for a reason leaves the node as the server has it. */
  private async runOp(entry: PendingCommit, op: PendingOp): Promise<void> {
    const { client, tree, log } = this.opts;
    const id = this.mapped(entry.nodeId);
    const gone = (err: unknown) => err instanceof ApiError && (err.code === 'not_found' || err.code === 'node_deleted');
    if (op.kind === 'delete') {
      try {
        await client.remove(id, op.folder ? { ifEmpty: true } : op.ifVersion === undefined ? {} : { ifVersion: op.ifVersion });
      } catch (err) {
        if (gone(err)) return;
        // The head is this mount's own save that landed after the delete was queued: delete it.
        if (err instanceof ApiError && err.code === 'stale_version' && !op.folder && Number(err.extra.head_version) === this.ownVersion(id)) {
          await client.remove(id, { ifVersion: Number(err.extra.head_version) });
          return;
        }
        if (!(err instanceof ApiError && !isTransient(err))) throw err;
        // Edited (or added to) elsewhere since this mount saw it: the edit survives the delete. Any
        // other refusal also keeps the node (a delete never holds up what is queued after it).
        log?.(`kept ${id}: its delete was refused (${err.code}: ${err.message})`);
        await client.node(id).then((info) => tree.applyInfo(info)).catch(() => undefined);
      }
      return;
    }
    let parentId = this.mapped(op.parentId);
    for (let attempt = 0; ; attempt++) {
      const name = attempt === 0 ? op.name : conflictedCopyName(op.name, this.opts.device, new Date(entry.createdAt), attempt - 1);
      try {
        tree.applyInfo(await client.update(id, { parent_id: parentId, name }));
        return;
      } catch (err) {
        if (err instanceof ApiError && err.code === 'exists' && attempt < 20) continue;
        if (gone(err)) {
          // The node went elsewhere (its content, if any, is kept by its own entries); or its new folder did.
          const node = await client.node(id).catch(() => undefined);
          if (!node || node.deleted_at !== null) return;
          parentId = await this.liveFolder(parentId);
          attempt = -1;
          continue;
        }
        if (err instanceof ApiError && !isTransient(err)) {
          // Refused for good (e.g. a folder moved into what was moved into it elsewhere meanwhile):
          // the node stays where the server has it; retrying would hold up everything queued after it.
          log?.(`move of ${id} to "${op.name}" refused: ${err.message}; it stays where the server has it`);
          await client.node(id).then((info) => tree.applyInfo(info)).catch(() => undefined);
          return;
        }
        throw err;
      }
    }
  }

  /**
   * The id of a live folder at the place of `id`: the folder itself, or — when it was deleted
   * elsewhere while this mount wrote into it — a folder of the same name made again in its
   * (recursively live) parent, so what was written keeps its path.
   */
  private async liveFolder(id: string): Promise<string> {
    const { client, tree } = this.opts;
    let info: NodeInfo;
    try {
      info = await client.node(id);
    } catch (err) {
      if (err instanceof ApiError && err.code === 'not_found') return tree.rootId;
      throw err;
    }
    if (info.deleted_at === null || info.parent_id === null) return info.id;
    const parent = await this.liveFolder(info.parent_id);
    try {
      const made = await client.create({ parent_id: parent, name: info.name, kind: 'dir', mode: info.mode, mtime: info.mtime });
      tree.applyInfo(made);
      return made.id;
    } catch (err) {
      if (!(err instanceof ApiError && err.code === 'exists')) throw err;
      if (err.extra.kind === 'dir' && typeof err.extra.node_id === 'string') return err.extra.node_id;
      return parent;
    }
  }

  private applyCommitted(nodeId: string, manifest: Manifest): void {
    this.opts.tree.patch(nodeId, { headVersion: manifest.version, size: manifest.size, mtime: manifest.mtime });
    // What this mount wrote opens offline too (its blocks are in the cache from the upload).
    this.opts.store.putManifest(nodeId, manifest.version, manifest.blocks).catch(() => undefined);
  }

  private async remove(entry: PendingCommit): Promise<void> {
    await this.opts.store.removePending(entry.id);
    this.entries = this.entries.filter((e) => e.id !== entry.id);
    this.reindex();
    this.cancelled.delete(entry.id);
    this.retryAt.delete(entry.id);
    this.failures.delete(entry.id);
    this.releaseReservation(entry.id);
    await this.dropStaging(entry.staging);
    this.emit('changed');
  }

  private async dropStaging(path: string): Promise<void> {
    if (!path) return;
    if (this.stagingUsers.has(path)) this.orphanStaging.add(path);
    else await rm(path, { force: true });
  }
}

/** What the server needs besides parent and name: a link its target, a file or folder its mode (the tree's current one when known). */
function createFields(create: PendingCreate, local: LocalNode | undefined, mtime: number): Pick<CreateNodeRequest, 'kind' | 'mode' | 'target' | 'mtime'> {
  if (create.kind !== 'link') return { kind: create.kind, mode: local?.mode ?? create.mode, mtime };
  // A link's only content is its target; its mtime is the tree's (lutimes, `cp -a`, `tar x` set it after the symlink).
  return { kind: 'link', target: create.target ?? '', mtime: local?.mtime ?? mtime };
}

/**
 * Whether a node made offline may become the node of its name the server has already: folders
 * merge; an empty file whose content is on its way is taken over; a link with the same target is
 * the same link (also a create of ours that landed with its reply lost).
 */
function joinable(create: PendingCreate, existing: NodeInfo): boolean {
  if (create.kind === 'dir') return true;
  if (create.kind === 'link') return existing.target === create.target;
  return existing.head_version === 0;
}

function sameBlocks(a: BlockRef[], b: BlockRef[]): boolean {
  return a.length === b.length && a.every((x, i) => x.hash === b[i]!.hash && x.size === b[i]!.size);
}
