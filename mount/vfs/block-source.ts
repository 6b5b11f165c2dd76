import type { BlockCache } from '../../cache/block-cache.js';
import type { StratusClient } from '../../protocol/client.js';
import type { ChunkerPool } from '../chunker/pool.js';
import { FsError, isTransient } from './errors.js';

export interface BlockSourceOptions {
  /** How long one block fetch may take before the reader gets EIO. */
  fetchTimeoutMs?: number;
  /** Blocks fetched at once across the mount (reads and read-ahead). */
  maxParallel?: number;
  attempts?: number;
}

/**
 * Where block bytes come from: the disk cache, else the server — one fetch per block however many
 * readers want it, hash verified (in a worker) before anything uses the bytes.
 */
export class BlockSource {
  private readonly inflight = new Map<string, Promise<Buffer>>();
  private readonly waiting: (() => void)[] = [];
  private running = 0;
  /** Until then the server is taken as silent (see isSilence): fetches fail at once. */
  private silentUntil = 0;
  readonly stats = { fetches: 0, fetchedBytes: 0, verifyFailures: 0 };

  constructor(
    private readonly client: StratusClient,
    readonly cache: BlockCache,
    private readonly pool: ChunkerPool,
    private readonly opts: BlockSourceOptions = {},
  ) {}

  /**
   * Copies `length` bytes of block `hash` from `blockOffset` into `target`. A cached block is read
   * synchronously (the one sync call that pays); otherwise it is fetched first.
   */
  async readInto(hash: string, size: number, target: Buffer, targetOffset: number, blockOffset: number, length: number): Promise<number> {
    const n = this.cache.readSync(hash, target, targetOffset, length, blockOffset);
    if (n >= 0) return n;
    this.cache.pin(hash);
    try {
      const bytes = await this.fetch(hash, size);
      return bytes.copy(target, targetOffset, blockOffset, Math.min(blockOffset + length, bytes.length));
    } finally {
      this.cache.unpin(hash);
    }
  }

  /** The whole block (from the cache or the server). */
  async get(hash: string, size: number): Promise<Buffer> {
    return (await this.cache.get(hash)) ?? this.fetch(hash, size);
  }

  /** Starts fetching a block that will probably be read soon; failures are left to the real read. */
  prefetch(hash: string, size: number): void {
    if (this.cache.has(hash) || this.inflight.has(hash)) return;
    this.fetch(hash, size).catch(() => undefined);
  }

  isFetching(hash: string): boolean {
    return this.inflight.has(hash);
  }

  /** Fetches (or joins the fetch of) one block, verifies it and stores it in the cache. */
  fetch(hash: string, size: number): Promise<Buffer> {
    let p = this.inflight.get(hash);
    if (!p) {
      p = this.fetchVerified(hash, size).finally(() => this.inflight.delete(hash));
      this.inflight.set(hash, p);
    }
    return p;
  }

  private async fetchVerified(hash: string, size: number): Promise<Buffer> {
    const attempts = this.opts.attempts ?? 3;
    let lastErr: unknown;
    for (let i = 0; i < attempts; i++) {
      if (Date.now() < this.silentUntil) {
        lastErr = new FsError('EIO', 'the server does not answer (not cached here)');
        break;
      }
      try {
        const bytes = await this.slot(() => withTimeout(this.client.getBlock(hash), this.opts.fetchTimeoutMs ?? 60_000));
        this.silentUntil = 0;
        this.stats.fetches++;
        this.stats.fetchedBytes += bytes.length;
        const verified = await this.pool.hash(bytes);
        if (verified.hash !== hash || verified.bytes.length !== size) {
          this.stats.verifyFailures++;
          lastErr = new FsError('EIO', `block ${hash} failed verification`);
          continue;
        }
        try {
          await this.cache.put(hash, verified.bytes);
        } catch {
          // Cache full of pinned data: serve from memory this once.
        }
        return verified.bytes;
      } catch (err) {
        lastErr = err;
        // A silent network (no answer at all): no retry, and other fetches fail at once for a while
        // (the kernel re-reads a page whose read-ahead failed: each would wait the whole timeout).
        if (isSilence(err)) {
          this.silentUntil = Date.now() + SILENCE_HOLD_MS;
          break;
        }
        if (!isTransient(err)) break;
      }
    }
    throw lastErr instanceof FsError ? lastErr : new FsError('EIO', `fetching block ${hash}: ${(lastErr as Error)?.message}`);
  }

  private async slot<T>(fn: () => Promise<T>): Promise<T> {
    const max = this.opts.maxParallel ?? 8;
    while (this.running >= max) await new Promise<void>((r) => this.waiting.push(r));
    this.running++;
    try {
      return await fn();
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
  }
}

/**
 * How long fetches fail at once after one found the server silent: long enough for the kernel's
 * immediate retry of a failed read-ahead page, short enough that one slow answer from a busy
 * server costs little.
 */
const SILENCE_HOLD_MS = 2_000;

function isSilence(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return (err instanceof FsError && err.code === 'EIO') || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT';
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new FsError('EIO', `no answer from the server within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
