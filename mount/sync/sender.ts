import { EventEmitter } from 'node:events';
import type { BlockCache } from '../../cache/block-cache.js';
import type { StratusClient } from '../../protocol/client.js';
import { isRefusal, isTransientFailure, retryAfterMs } from '../../protocol/transient.js';
import type { ServerConfig } from '../../protocol/types.js';
import type { BlockSource } from '../blocks/block-source.js';
import type { ChunkerPool } from '../chunker/pool.js';
import { isStructural, type ContentOp, type CreateOp, type DeleteOp, type MoveOp, type SetattrOp } from '../model/ops.js';
import type { Tree } from '../node/tree.js';
import type { Entry, OpLog } from '../oplog/op-log.js';
import type { Say } from '../log.js';
import { Backoff } from '../retry/backoff.js';
import type { StateStore } from '../state/store.js';
import { describeNode } from './describe.js';
import { refreshNode } from './refresh-node.js';
import { sendContent } from './send-content.js';
import type { CommitResult, SendContext, SendStats } from './send-context.js';
import { sendCreate } from './send-create.js';
import { sendDelete } from './send-delete.js';
import { sendMove } from './send-move.js';
import { sendSetattr } from './send-setattr.js';

export type { CommitResult } from './send-context.js';

export interface SenderOptions {
  log: OpLog;
  tree: Tree;
  store: StateStore;
  client: StratusClient;
  pool: ChunkerPool;
  cache: BlockCache;
  source: BlockSource;
  config: ServerConfig;
  device: string;
  /** Saves committed at once (different files); blocks uploaded at once per file. */
  parallelCommits?: number;
  parallelUploads?: number;
  /** The drive's log: one warning per failure, naming the file by its path. */
  say?: Say;
  /** First retry delay after a transient failure (doubles up to 30 s). */
  retryMs?: number;
}

/** Entries of the log's front a kick looks at (see kick). */
const KICK_WINDOW = 512;

/**
 * The one code that sends local changes to the server (DESIGN §6): it drains the operation log
 * in order. Creates, renames, deletes and attribute changes go one at a time, in the order they
 * were made (they depend on each other's names: `rm f; echo new > f`, `mv f f.bak; mv f.new f`);
 * saves of different files go a few at once, each after everything logged before it for its node
 * (and for a node it replaces). A transient failure retries the entry with backoff (what the
 * server says in Retry-After is respected); a refusal of a change settles it as the server has it.
 * Online and offline differ only in whether this waits.
 *
 * Events: `committed` (CommitResult) for each save that became a version.
 */
export class Sender extends EventEmitter {
  readonly stats: SendStats = { commits: 0, conflicts: 0, uploadedBlocks: 0, uploadedBytes: 0, checkedBlocks: 0, sent: 0 };
  private readonly ctx: SendContext;
  private readonly running = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly o: SenderOptions) {
    super();
    this.ctx = {
      client: o.client,
      tree: o.tree,
      log: o.log,
      store: o.store,
      pool: o.pool,
      cache: o.cache,
      source: o.source,
      config: o.config,
      device: o.device,
      stats: this.stats,
      parallelUploads: o.parallelUploads ?? 4,
      say: o.say ?? (() => undefined),
    };
    o.log.on('changed', () => this.kick());
  }

  start(): void {
    this.kick();
  }

  get pendingCount(): number {
    return this.o.log.pendingNodes;
  }

  get pendingBytes(): number {
    return this.o.log.pendingBytes;
  }

  /** Tries what waits on a retry timer at once (the server is reachable again). */
  retryNow(): void {
    for (const e of this.o.log.list()) e.send.retryAt = 0;
    this.kick();
  }

  /** Waits until everything is sent; false on timeout. `progress` is told the counts whenever they change. */
  async drain(timeoutMs: number, progress?: (count: number, bytes: number) => void): Promise<boolean> {
    const onChange = () => progress?.(this.pendingCount, this.pendingBytes);
    onChange();
    this.o.log.on('changed', onChange);
    try {
      this.o.log.releaseHolds();
      this.retryNow();
      return await this.o.log.waitUntil(() => this.o.log.list().length === 0, timeoutMs).then(
        () => true,
        () => false,
      );
    } finally {
      this.o.log.off('changed', onChange);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await Promise.allSettled([...this.running]);
  }

  private kick(): void {
    if (this.stopped) return;
    const max = this.o.parallelCommits ?? 2;
    const now = Date.now();
    /** Nodes with an earlier entry not done: their later entries wait. */
    const busy = new Set<number>();
    let laneTaken = false;
    // Entries in flight started within the front and only move closer to it.
    let inFlight = 0;
    for (const e of this.o.log.list().slice(0, KICK_WINDOW)) if (e.send.inFlight && !isStructural(e.op)) inFlight++;
    let nextRetry = Infinity;
    // Only the front of the log can be ready (everything behind waits on its node's earlier
    // entries or the one structural lane): looking further would make each kick cost the whole log.
    let looked = 0;
    for (const e of this.o.log.list()) {
      if (++looked > KICK_WINDOW) break;
      const structural = isStructural(e.op);
      const replaced = e.op.kind === 'move' ? e.op.replace : undefined;
      const blocked = busy.has(e.op.ino) || (replaced !== undefined && busy.has(replaced)) || !e.durable || this.o.log.isHeld(e.op.ino);
      const laneBusy = structural && laneTaken;
      if (structural) laneTaken = true;
      busy.add(e.op.ino);
      if (replaced !== undefined) busy.add(replaced);
      if (e.send.inFlight || e.send.leaving || blocked || laneBusy) continue;
      if (e.send.retryAt > now) {
        nextRetry = Math.min(nextRetry, e.send.retryAt);
        continue;
      }
      if (!structural && inFlight >= max) continue;
      inFlight++;
      this.begin(e);
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (nextRetry !== Infinity) this.timer = setTimeout(() => this.kick(), Math.max(0, nextRetry - Date.now())).unref();
  }

  private begin(e: Entry): void {
    e.send.inFlight = true;
    e.send.started = true;
    const p = this.process(e).finally(() => {
      e.send.inFlight = false;
      this.running.delete(p);
      this.kick();
    });
    this.running.add(p);
  }

  private async process(e: Entry): Promise<void> {
    let result: CommitResult | undefined;
    try {
      result = await this.send(e);
      this.stats.sent++;
    } catch (err) {
      if (e.send.cancelled) {
        await this.settle(e);
        return;
      }
      if (isStructural(e.op) && isRefusal(err)) {
        // Refused for a reason no retry changes: the node stays as the server has it (nothing queued after it waits forever).
        this.ctx.say(`${e.op.kind} of ${this.describe(e)} refused: ${err.message}; the server's state stands`, 'warn');
        const sid = this.o.tree.node(e.op.ino)?.sid;
        if (sid) await refreshNode(this.ctx, sid);
        await this.settle(e);
        return;
      }
      e.send.backoff ??= new Backoff({ minMs: this.o.retryMs ?? 500, maxMs: 30_000, jitter: 0.25 });
      // A server that says when to come back (429 rate limit, 507 full disk) is not asked sooner.
      const delay = Math.max(e.send.backoff.next().delayMs, retryAfterMs(err));
      e.send.retryAt = Date.now() + delay;
      const refused = isTransientFailure(err) ? '' : ' (refused by the server; its bytes stay queued)';
      this.ctx.say(`${e.op.kind === 'content' ? 'commit' : e.op.kind} of ${this.describe(e)} failed: ${(err as Error).message}${refused}; retrying in ${Math.round(delay)} ms`, 'warn');
      return;
    }
    // Sent: nothing below may send it again (a retry of a commit would be a stale base, i.e. a false conflict).
    if (!(await this.settle(e))) return;
    if (result) this.emit('committed', result);
  }

  /**
   * The entry leaves the log. If that cannot be written (a full disk), it stays, to be sent again
   * later: every operation is safe to repeat once it landed (a create joins its node, a commit
   * whose reply was lost is recognised, a move or delete finds it done).
   */
  private async settle(e: Entry): Promise<boolean> {
    try {
      await this.o.log.done(e);
      return true;
    } catch (err) {
      e.send.backoff ??= new Backoff({ minMs: this.o.retryMs ?? 500, maxMs: 30_000, jitter: 0.25 });
      e.send.retryAt = Date.now() + e.send.backoff.next().delayMs;
      this.ctx.say(`${this.describe(e)}: sent, but the local state could not be written (${(err as Error).message}); sending again later`, 'error');
      return false;
    }
  }

  /** How log lines name an entry's node: its path on the drive. */
  private describe(e: Entry): string {
    return describeNode(this.o.tree, e.op.ino);
  }

  private async send(e: Entry): Promise<CommitResult | undefined> {
    const ctx = this.ctx;
    switch (e.op.kind) {
      case 'create':
        return sendCreate(ctx, e as Entry<CreateOp>).then(() => undefined);
      case 'move':
        return sendMove(ctx, e as Entry<MoveOp>).then(() => undefined);
      case 'delete':
        return sendDelete(ctx, e as Entry<DeleteOp>).then(() => undefined);
      case 'setattr':
        return sendSetattr(ctx, e as Entry<SetattrOp>).then(() => undefined);
      case 'content':
        return sendContent(ctx, e as Entry<ContentOp>);
    }
  }
}
