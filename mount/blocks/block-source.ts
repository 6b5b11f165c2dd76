import type { BlockCache } from '../../cache/block-cache.js';
import type { StratusClient } from '../../protocol/client.js';
import type { ChunkerPool } from '../chunker/pool.js';
import pLimit from 'p-limit';
import { withDeadline } from '../../protocol/deadline.js';
import type { Say } from '../log.js';
import { FsError, isTransient } from '../model/errors.js';

export interface BlockSourceOptions {
  /** How long one block fetch may take before the reader gets EIO. */
  fetchTimeoutMs?: number;
  /** Blocks fetched at once across the mount (reads and read-ahead). */
  maxParallel?: number;
  attempts?: number;
  /** Told once about each cached block found bad. */
  log?: Say;
  /** Told the time of each block request to the server (seconds), and whether it brought the block. */
  onFetch?: (seconds: number, ok: boolean) => void;
}

/**
 * Where block bytes come from: the disk cache, else the server — one fetch per block however many
 * readers want it, hash verified (in a worker) before anything uses the bytes.
 *
 * Cached bytes are trusted only once verified (cache/block-cache.ts, Integrity). The hot path, a
 * read of a block verified in this process, is the cache's `readSync` alone. Any other read takes
 * the whole block (`load`): from the cache file, read and hashed by a chunker-pool worker (the
 * event loop pays one message round trip) — so on a block's first use after the mount started,
 * after its file shrank, and on every `get` (which fills staging files: what goes back to the
 * server is never unchecked) — or, when the cached copy is missing or bad, from the server. A bad
 * copy is dropped from the cache and logged.
 */
export class BlockSource {
  private readonly inflight = new Map<string, Promise<Buffer>>();
  /** Whole-block loads (cache check, else fetch) under way: one per block. */
  private readonly loading = new Map<string, Promise<Buffer>>();
  /**
   * Blocks fetched and verified whose cache write is under way: readers take the bytes from here
   * (the write runs beside the reader, not before it).
   */
  private readonly storing = new Map<string, { bytes: Buffer; done: Promise<void> }>();
  /** Fetches to the server at once (reads and read-ahead across the mount). */
  private readonly slot: <T>(fn: () => Promise<T>) => Promise<T>;
  /** Until then the server is taken as silent (see isSilence): fetches fail at once. */
  private silentUntil = 0;
  /** cacheChecks: cached blocks hashed; cacheCorrupt: of those, found bad (dropped and fetched again). */
  /** cacheHits/cacheHitBytes: block reads served from the cache; cacheMisses: loads that had to fetch. */
  readonly stats = { fetches: 0, fetchedBytes: 0, verifyFailures: 0, cacheChecks: 0, cacheCorrupt: 0, cacheHits: 0, cacheHitBytes: 0, cacheMisses: 0 };

  constructor(
    private readonly client: StratusClient,
    readonly cache: BlockCache,
    private readonly pool: ChunkerPool,
    private readonly opts: BlockSourceOptions = {},
  ) {
    this.slot = pLimit(opts.maxParallel ?? 16);
  }

  /**
   * Copies `length` bytes of block `hash` from `blockOffset` into `target`. A verified cached block
   * is read synchronously (the one sync call that pays); otherwise the whole block is loaded first.
   */
  async readInto(hash: string, size: number, target: Buffer, targetOffset: number, blockOffset: number, length: number): Promise<number> {
    const n = this.cache.readSync(hash, target, targetOffset, length, blockOffset);
    if (n >= 0) {
      this.stats.cacheHits++;
      this.stats.cacheHitBytes += n;
      return n;
    }
    const fresh = this.storing.get(hash);
    if (fresh) return fresh.bytes.copy(target, targetOffset, blockOffset, Math.min(blockOffset + length, fresh.bytes.length));
    this.cache.pin(hash);
    try {
      const bytes = await this.load(hash, size);
      return bytes.copy(target, targetOffset, blockOffset, Math.min(blockOffset + length, bytes.length));
    } finally {
      this.cache.unpin(hash);
    }
  }

  /** The whole block, its bytes hashed right now (from the cache or the server). */
  get(hash: string, size: number): Promise<Buffer> {
    return this.load(hash, size);
  }

  /**
   * Starts loading a block that will probably be read soon (checking a cached copy not verified yet,
   * else fetching it); failures are left to the real read.
   */
  prefetch(hash: string, size: number): void {
    if (this.cache.isVerified(hash) || this.loading.has(hash) || this.inflight.has(hash) || this.storing.has(hash)) return;
    this.load(hash, size).catch(() => undefined);
  }

  /** Fetches (or joins the fetch of) one block, verifies it and stores it in the cache (resolves once stored). */
  async fetch(hash: string, size: number): Promise<Buffer> {
    const bytes = await this.fetchOnce(hash, size);
    await this.storing.get(hash)?.done;
    return bytes;
  }

  /** One fetch per block at a time; resolves once verified (its cache write may still be under way: `storing`). */
  private fetchOnce(hash: string, size: number): Promise<Buffer> {
    const fresh = this.storing.get(hash);
    if (fresh) return Promise.resolve(fresh.bytes);
    let p = this.inflight.get(hash);
    if (!p) {
      p = this.fetchVerified(hash, size).finally(() => this.inflight.delete(hash));
      this.inflight.set(hash, p);
    }
    return p;
  }

  /** The whole block, verified: the cached copy if it hashes right, else fetched. One load per block at a time. */
  private load(hash: string, size: number): Promise<Buffer> {
    let p = this.loading.get(hash);
    if (!p) {
      p = this.loadOnce(hash, size).finally(() => this.loading.delete(hash));
      this.loading.set(hash, p);
    }
    return p;
  }

  private async loadOnce(hash: string, size: number): Promise<Buffer> {
    const cached = await this.fromCache(hash, size);
    if (cached) {
      this.stats.cacheHits++;
      this.stats.cacheHitBytes += cached.length;
      return cached;
    }
    this.stats.cacheMisses++;
    return this.fetchOnce(hash, size);
  }

  /**
   * The cached copy, read and hashed in a worker; when right the cache serves it with `readSync`
   * from now on, when wrong (or unreadable) it is dropped and undefined returned: fetch it.
   */
  private async fromCache(hash: string, size: number): Promise<Buffer | undefined> {
    const file = this.cache.fileOf(hash);
    if (file === undefined) return undefined;
    this.stats.cacheChecks++;
    let why: string;
    try {
      const checked = await this.pool.hashFile(file, size);
      if (checked.size === size && checked.hash === hash) {
        this.cache.markVerified(hash, size);
        return checked.bytes;
      }
      why = checked.size === size ? `its ${size} bytes hash to ${checked.hash}` : `${checked.size} bytes, not ${size}`;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.syscall === undefined) throw err; // the pool, not the file (a worker died…): the reader gets EIO
      if (e.code === 'ENOENT' && this.cache.fileOf(hash) === undefined) return undefined; // evicted meanwhile
      why = e.code === 'ENOENT' ? 'its file is gone' : `its file cannot be read (${e.code ?? e.message})`;
    }
    this.stats.cacheCorrupt++;
    this.opts.log?.(`cached block ${hash} is bad (${why}): dropped, fetching it again`, 'warn');
    await this.cache.drop(hash);
    return undefined;
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
        const bytes = await this.slot(() => this.timed(() => withDeadline(this.client.getBlock(hash), this.opts.fetchTimeoutMs ?? 60_000, `block ${hash.slice(0, 12)}`)));
        this.silentUntil = 0;
        this.stats.fetches++;
        this.stats.fetchedBytes += bytes.length;
        const verified = await this.pool.hash(bytes);
        if (verified.hash !== hash || verified.bytes.length !== size) {
          this.stats.verifyFailures++;
          lastErr = new FsError('EIO', `block ${hash} failed verification`);
          continue;
        }
        this.store(hash, verified.bytes);
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

  /** Resolves once the cache writes under way now have ended. */
  async stored(): Promise<void> {
    await Promise.all([...this.storing.values()].map((s) => s.done));
  }

  /** Writes a verified block to the cache beside its readers; a cache full of pinned data keeps it in memory only this once. */
  private store(hash: string, bytes: Buffer): void {
    if (this.storing.has(hash)) return;
    const done = this.cache
      .put(hash, bytes)
      .catch(() => undefined)
      .finally(() => this.storing.delete(hash));
    this.storing.set(hash, { bytes, done });
  }

  /** One request to the server, its time told to `onFetch` (the wait for a slot not included). */
  private async timed<T>(fn: () => Promise<T>): Promise<T> {
    if (!this.opts.onFetch) return fn();
    const started = process.hrtime.bigint();
    let ok = false;
    try {
      const result = await fn();
      ok = true;
      return result;
    } finally {
      this.opts.onFetch(Number(process.hrtime.bigint() - started) / 1e9, ok);
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
  return (err instanceof FsError && err.code === 'EIO') || code === 'ETIMEDOUT' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT';
}
