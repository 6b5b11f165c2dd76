import { EventEmitter } from 'node:events';
import type { StratusClient } from '../../protocol/client.js';
import type { ChangeEntry, NodeInfo } from '../../protocol/types.js';
import type { Tree } from '../node/tree.js';
import type { Say } from '../log.js';
import { Backoff } from '../retry/backoff.js';

/** Where hints come from: the events WebSocket (mount/sync/events.ts) or a test's stand-in. */
export interface HintSource {
  readonly connected: boolean;
  /** The server answered a pull: reconnect now rather than after the backoff delay. */
  wake?(): void;
  on(event: 'hint', fn: (hint: number) => void): unknown;
  on(event: 'connected', fn: () => void): unknown;
  on(event: 'disconnected', fn: (reason: string) => void): unknown;
  off(event: 'hint', fn: (hint: number) => void): unknown;
  off(event: 'connected', fn: () => void): unknown;
  off(event: 'disconnected', fn: (reason: string) => void): unknown;
}

export interface SyncerOptions {
  client: Pick<StratusClient, 'changes' | 'node'>;
  tree: Pick<Tree, 'applyFeed' | 'setCursor' | 'localMark' | 'changedLocallySince' | 'forgetLocalBefore' | 'refetch'>;
  /** The saved cursor the tree was loaded at. */
  cursor: string;
  hints?: HintSource;
  /** Retry delays of a failed pull (ms): first, cap, ±jitter fraction. */
  retryMinMs?: number;
  retryMaxMs?: number;
  retryJitter?: number;
  /** Page size asked of /v1/changes (server default when unset). */
  pageSize?: number;
  log?: Say;
}

export interface SyncerEvents {
  /**
   * A page of remote changes was applied to the tree. `files`: inode numbers of files still in the tree whose
   * content attributes (version, size, mtime) changed, or that took the name of another node — the
   * ones whose kernel attributes may be stale.
   */
  applied: [changes: ChangeEntry[], files: number[]];
  /** Something `stratus status` shows changed: connection, cursor, last sync, last error. */
  status: [];
}

/**
 * Keeps the tree current with the change feed (DESIGN §5): pulls `/v1/changes?since=cursor`, all
 * pages, at start, on every hint and on every (re)connect of the hint channel.
 * Pulls run one at a time; whatever asks for one during a pull gets exactly one more pull after
 * it. A failed pull is retried with backoff and jitter (and at once when the channel reconnects),
 * so a missed hint or an outage costs latency, never correctness.
 */
export class Syncer extends EventEmitter<SyncerEvents> {
  /** Everything up to this cursor is applied to the tree (and saved with it). */
  cursor: string;
  /** When the last pull succeeded (ms since the epoch). */
  lastSyncAt: number | undefined;
  /** Why the last pull failed; cleared by the next success. */
  lastError: string | undefined;
  /** Pulls started so far (each one walks all pages). */
  pulls = 0;

  private running: Promise<void> | undefined;
  private again = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly backoff: Backoff;
  private closed = false;
  private started = false;
  private readonly idleWaiters: (() => void)[] = [];

  constructor(private readonly o: SyncerOptions) {
    super();
    this.cursor = o.cursor;
    this.backoff = new Backoff({ minMs: o.retryMinMs ?? 250, maxMs: o.retryMaxMs ?? 30_000, jitter: o.retryJitter ?? 0.25 });
    o.tree.refetch = (sid) => void this.refetch(sid);
  }

  /** Fetches a node's current state and applies it as a change of the feed (unless changed here meanwhile). Best effort. */
  private async refetch(sid: string): Promise<void> {
    const mark = this.o.tree.localMark();
    const now = await this.o.client.node(sid).catch(() => undefined);
    if (!now || this.closed || this.o.tree.changedLocallySince(sid, mark)) return;
    const files: number[] = [];
    this.apply(now, files);
    if (files.length) this.emit('applied', [now], files);
  }

  /** The hint channel is open. */
  get connected(): boolean {
    return this.o.hints?.connected ?? false;
  }

  /** The server answers, as far as the mount knows: the hint channel is open, or the last pull succeeded. */
  get online(): boolean {
    return this.connected || (this.lastSyncAt !== undefined && this.lastError === undefined);
  }

  /** Listens to the hint source and starts the first pull (in the background). */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.o.hints?.on('hint', this.onHint);
    this.o.hints?.on('connected', this.onConnected);
    this.o.hints?.on('disconnected', this.onDisconnected);
    this.request();
  }

  /** Asks for a pull: starts one now, or one more after the running one. */
  request(): void {
    if (this.closed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.running = this.loop().finally(() => {
      this.running = undefined;
      if (!this.busy) for (const w of this.idleWaiters.splice(0)) w();
    });
  }

  /** Pulls now (after any running pull) and rejects if that pull fails; for the daemon's start. */
  async pullNow(): Promise<void> {
    while (this.running) await this.running;
    if (this.closed) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.again = false;
    const pull = this.pull();
    this.running = pull
      .then(
        () => undefined,
        () => undefined,
      )
      .finally(() => {
        this.running = undefined;
        if (this.again) this.request();
        else for (const w of this.idleWaiters.splice(0)) w();
      });
    await pull;
  }

  /** Resolves when no pull runs and none is asked for (a scheduled retry does not count). */
  idle(): Promise<void> {
    if (!this.busy) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private get busy(): boolean {
    return this.running !== undefined;
  }

  /** Stops listening and retrying; waits for a running pull to end (the tree is not touched after). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.o.hints?.off('hint', this.onHint);
    this.o.hints?.off('connected', this.onConnected);
    this.o.hints?.off('disconnected', this.onDisconnected);
    await this.running;
  }

  /** Something visible changed on the server (the cursor is opaque: every hint is worth a pull; one running takes another after it). */
  private readonly onHint = (): void => {
    this.request();
  };

  private readonly onConnected = (): void => {
    this.emit('status');
    // A reconnect ends the wait of a failed pull, and covers every hint sent while disconnected.
    this.request();
  };

  private readonly onDisconnected = (): void => {
    this.emit('status');
    // Tells a dropped connection from a server gone (the pull fails: offline) without waiting.
    this.request();
  };

  private async loop(): Promise<void> {
    for (;;) {
      this.again = false;
      try {
        await this.pull();
      } catch {
        if (!this.again && !this.closed) this.scheduleRetry();
        if (!this.again) return;
        continue;
      }
      if (this.closed) return;
      if (!this.again) return;
    }
  }

  private async pull(): Promise<void> {
    this.pulls++;
    try {
      for (;;) {
        const mark = this.o.tree.localMark();
        const page = await this.o.client.changes(this.cursor, this.o.pageSize);
        if (this.closed) return;
        const files: number[] = [];
        const changedHere: string[] = [];
        for (const change of page.changes) {
          if (this.o.tree.changedLocallySince(change.id, mark)) changedHere.push(change.id);
          else this.apply(change, files);
        }
        // Nodes this mount changed while the page was on its way: their state now, not the page's.
        // (The same race once more: a local change while that answer is on its way wins over it.)
        for (const id of changedHere) {
          for (let attempt = 0; attempt < 3; attempt++) {
            const before = this.o.tree.localMark();
            const now = await this.o.client.node(id).catch(() => undefined);
            if (!now) break;
            if (this.o.tree.changedLocallySince(id, before)) continue;
            this.apply(now, files);
            break;
          }
        }
        this.o.tree.forgetLocalBefore(mark);
        if (page.cursor !== this.cursor) {
          this.cursor = page.cursor;
          this.o.tree.setCursor(page.cursor);
        }
        if (page.changes.length) this.emit('applied', page.changes, files);
        if (!page.has_more) break;
      }
    } catch (err) {
      const msg = (err as Error).message;
      if (msg !== this.lastError) this.o.log?.(`sync: cannot pull changes: ${msg}`, 'warn');
      this.lastError = msg;
      this.emit('status');
      throw err;
    }
    this.backoff.reset();
    if (this.lastError !== undefined) this.o.log?.('sync: pulling changes again');
    this.lastError = undefined;
    this.lastSyncAt = Date.now();
    if (!this.connected) this.o.hints?.wake?.();
    this.emit('status');
  }

  /** Applies one change; a file whose kernel attributes may now be stale goes to `files`. */
  private apply(change: NodeInfo, files: number[]): void {
    const stale = this.o.tree.applyFeed(change);
    if (stale !== undefined) files.push(stale);
  }

  private scheduleRetry(): void {
    const { delayMs } = this.backoff.next();
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.request();
    }, delayMs);
  }
}
