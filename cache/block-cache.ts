import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { LRUCache } from 'lru-cache';
import { isBlockHash } from '../protocol/hash.js';
import { blockPath, blocksRoot, scanBlocks, tempPath } from './layout.js';

/**
 * The mount's LRU disk cache of blocks (DESIGN §7), bounded in bytes.
 *
 * Accounting. `bytes` (blocks in the index) + `writingBytes` (puts under way) + `reservedBytes`
 * (dirty data staged elsewhere) never exceeds `maxBytes`: a put or reserve claims its bytes up
 * front, evicting least-recently-used unpinned blocks to make room, or fails with CacheFullError
 * having changed nothing. An evicted block leaves the index at once (so it can no longer be read)
 * and its file is deleted in the background; every claim waits for the deletions pending when it
 * was made before it uses its bytes, so the files on disk stay within the bound too.
 *
 * Event loop. FUSE callbacks run on the Node event loop, so everything is async except
 * `readSync` (open on first use, then `fs.readSync` on a kept descriptor).
 *
 * Integrity. A block file can go bad on disk behind the cache's back (a flipped bit, a truncation).
 * The cache does not hash (that is CPU work for a worker, not for the event loop): it keeps, per
 * block, whether its bytes were verified in this process. `put` takes bytes the caller verified;
 * blocks found on disk at `open` are unverified. `readSync` serves verified blocks only, and one
 * whose file turned out shorter than its size becomes unverified again. A caller reads an
 * unverified block whole (`get`, or its file `fileOf` in a worker), hashes it, and then calls
 * `markVerified` or `drop`.
 */

export interface BlockCacheOptions {
  dir: string;
  maxBytes: number;
}

export class CacheFullError extends Error {
  readonly code = 'ENOSPC';
  override readonly name = 'CacheFullError';
}

export interface BlockCacheStats {
  blocks: number;
  bytes: number;
  reservedBytes: number;
  maxBytes: number;
  hits: number;
  misses: number;
  evictions: number;
  /** Blocks dropped as bad (see `drop`). */
  dropped: number;
}

interface Entry {
  size: number;
  /** Read or written since open: its recency is written back to the file times at close. */
  touched: boolean;
  /** Its bytes were put by a caller that verified them, or hashed right since open (`markVerified`). */
  verified: boolean;
}

/** Descriptors kept open for readSync. */
const MAX_OPEN_FDS = 64;
/** File-time updates in flight at once when close() persists recency. */
const CLOSE_CONCURRENCY = 32;

export class BlockCache {
  /** Least recently used first in `rkeys()`. Bounded by our own accounting, not by lru-cache. */
  private readonly index = new LRUCache<string, Entry>({
    maxSize: Number.MAX_SAFE_INTEGER,
    sizeCalculation: () => 1,
  });
  private readonly fds = new LRUCache<string, number>({
    max: MAX_OPEN_FDS,
    // Only descriptors pushed out by newer ones; evictBlock/close close their own.
    dispose: (fd, _hash, reason) => {
      if (reason === 'evict') this.inBackground(closeFd(fd));
    },
  });
  private readonly pins = new Map<string, number>();
  /** Puts under way, by hash, so a second put of the same block joins the first. */
  private readonly puts = new Map<string, Promise<void>>();
  /** Write phases of puts that hold a claim: a claim that does not fit yet may wait for them. */
  private readonly writes = new Set<Promise<void>>();
  /** Block folders known to exist (made by this process). */
  private readonly madeDirs = new Set<string>();
  /** File deletions of evicted blocks (closing their descriptor and unlinking). */
  private readonly deletions = new Set<Promise<void>>();
  private readonly background = new Set<Promise<void>>();

  private bytes = 0;
  private pinnedBytes = 0;
  private writingBytes = 0;
  private reservedBytes = 0;
  private hits = 0;
  private misses = 0;
  private evictions = 0;
  private dropped = 0;
  private closed = false;
  /** Newest file time seen at open: recency written at close must come after it. */
  private newestAtOpenMs = 0;

  private constructor(
    private readonly root: string,
    readonly maxBytes: number,
  ) {}

  static async open(opts: BlockCacheOptions): Promise<BlockCache> {
    if (!Number.isSafeInteger(opts.maxBytes) || opts.maxBytes < 0) {
      throw new RangeError(`maxBytes must be a non-negative integer, got ${opts.maxBytes}`);
    }
    const cache = new BlockCache(blocksRoot(opts.dir), opts.maxBytes);
    await fsp.mkdir(cache.root, { recursive: true, mode: 0o700 });
    const found = await scanBlocks(cache.root);
    found.sort((x, y) => x.usedMs - y.usedMs || (x.hash < y.hash ? -1 : 1));
    for (const block of found) {
      cache.index.set(block.hash, { size: block.size, touched: false, verified: false });
      cache.bytes += block.size;
      cache.newestAtOpenMs = Math.max(cache.newestAtOpenMs, block.usedMs);
    }
    if (cache.bytes > cache.maxBytes) cache.evictUnpinned(cache.bytes - cache.maxBytes);
    await cache.settleDeletions();
    return cache;
  }

  has(hash: string): boolean {
    checkHash(hash);
    return this.index.has(hash);
  }

  /** The file of a cached block, for a caller that reads and checks it off the event loop; undefined when not cached. */
  fileOf(hash: string): string | undefined {
    checkHash(hash);
    return !this.closed && this.index.has(hash) ? blockPath(this.root, hash) : undefined;
  }

  /** Cached and verified in this process: `readSync` would serve it. */
  isVerified(hash: string): boolean {
    checkHash(hash);
    return this.index.peek(hash)?.verified === true;
  }

  /**
   * Copies bytes of a verified block into `target`; returns the count (cut at the end of the
   * block), or -1 when the block is not cached, not verified in this process, or its file is
   * shorter than its size (it is then unverified again: the caller checks it with `get`).
   */
  readSync(hash: string, target: Buffer, targetOffset: number, length: number, blockOffset: number): number {
    checkHash(hash);
    checkRange(target, targetOffset, length, blockOffset);
    const entry = this.closed ? undefined : this.index.get(hash);
    if (!entry) {
      this.misses++;
      return -1;
    }
    if (!entry.verified) return -1;
    const end = Math.min(entry.size, blockOffset + length);
    if (end <= blockOffset) {
      this.hits++;
      return 0;
    }
    let fd = this.fds.get(hash);
    if (fd === undefined) {
      try {
        fd = fs.openSync(blockPath(this.root, hash), 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        this.forget(hash);
        this.misses++;
        return -1;
      }
      this.fds.set(hash, fd);
    }
    let done = 0;
    while (blockOffset + done < end) {
      const n = fs.readSync(fd, target, targetOffset + done, end - blockOffset - done, blockOffset + done);
      if (n === 0) {
        // Shorter than the block: changed on disk since it was verified.
        entry.verified = false;
        return -1;
      }
      done += n;
    }
    entry.touched = true;
    this.hits++;
    return done;
  }

  /** The block's file as it is on disk, verified or not (see Integrity above); undefined when not cached. */
  async get(hash: string): Promise<Buffer | undefined> {
    checkHash(hash);
    const entry = this.closed ? undefined : this.index.get(hash);
    if (!entry) {
      this.misses++;
      return undefined;
    }
    try {
      const bytes = await fsp.readFile(blockPath(this.root, hash));
      entry.touched = true;
      this.hits++;
      return bytes;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // Evicted while we read, or removed behind our back.
      if (this.index.peek(hash) === entry) this.forget(hash);
      this.misses++;
      return undefined;
    }
  }

  /**
   * Marks the cached block verified (and used) after its caller hashed its bytes right, if it is
   * still cached with that size. Returns whether `readSync` now serves it.
   */
  markVerified(hash: string, size: number): boolean {
    checkHash(hash);
    const entry = this.closed ? undefined : this.index.peek(hash);
    if (!entry || entry.size !== size) return false;
    this.index.get(hash); // most recently used
    entry.verified = true;
    entry.touched = true;
    return true;
  }

  /**
   * Drops a block found bad: it leaves the index at once (pinned or not) and the promise resolves
   * once its file is gone. A put of the same hash meanwhile writes its file after that deletion.
   */
  async drop(hash: string): Promise<void> {
    checkHash(hash);
    if (!this.index.has(hash)) return;
    this.dropped++;
    await this.deleteBlock(hash);
  }

  /** Stores `bytes` as block `hash`; the caller vouches that they are (a hash it checked, or the server's acceptance). */
  async put(hash: string, bytes: Uint8Array): Promise<void> {
    checkHash(hash);
    this.checkOpen();
    const entry = this.index.get(hash);
    if (entry) {
      entry.touched = true;
      return;
    }
    const pending = this.puts.get(hash);
    if (pending) return pending;
    const put = this.store(hash, bytes).finally(() => this.puts.delete(hash));
    this.puts.set(hash, put);
    return put;
  }

  pin(hash: string): void {
    checkHash(hash);
    const count = this.pins.get(hash) ?? 0;
    this.pins.set(hash, count + 1);
    if (count === 0) this.pinnedBytes += this.index.peek(hash)?.size ?? 0;
  }

  unpin(hash: string): void {
    checkHash(hash);
    const count = this.pins.get(hash);
    if (!count) throw new Error(`unpin of block ${hash}, which is not pinned`);
    if (count > 1) {
      this.pins.set(hash, count - 1);
      return;
    }
    this.pins.delete(hash);
    this.pinnedBytes -= this.index.peek(hash)?.size ?? 0;
  }

  async reserve(bytes: number): Promise<void> {
    checkAmount(bytes);
    this.checkOpen();
    await this.claim(bytes);
    // The caller writes its staging data as soon as this resolves: the evicted files must be gone.
    await this.settleDeletions();
  }

  release(bytes: number): void {
    checkAmount(bytes);
    if (bytes > this.reservedBytes) {
      throw new RangeError(`release of ${bytes} bytes, but only ${this.reservedBytes} are reserved`);
    }
    this.reservedBytes -= bytes;
  }

  stats(): BlockCacheStats {
    return {
      blocks: this.index.size,
      bytes: this.bytes,
      reservedBytes: this.reservedBytes,
      maxBytes: this.maxBytes,
      hits: this.hits,
      misses: this.misses,
      evictions: this.evictions,
      dropped: this.dropped,
    };
  }

  /** Waits for puts under way, closes descriptors and writes recency into file times for the next open. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.puts.values()]);
    await this.settleDeletions();
    const fds = [...this.fds.values()];
    this.fds.clear(); // dispose ignores 'delete': we close them here
    await Promise.all(fds.map(closeFd));
    await this.persistRecency();
    await Promise.allSettled([...this.background]);
  }

  // ---- internals ----

  private async store(hash: string, bytes: Uint8Array): Promise<void> {
    const size = bytes.byteLength;
    let finish = noop;
    const finished = new Promise<void>((resolve) => (finish = resolve));
    try {
      await this.claim(size, finished);
      try {
        await this.writeFile(hash, bytes);
      } finally {
        this.writes.delete(finished);
        this.writingBytes -= size;
      }
      // Same tick as giving back the claim: the bytes move from "writing" to "cached".
      this.index.set(hash, { size, touched: true, verified: true });
      this.bytes += size;
      if (this.pins.has(hash)) this.pinnedBytes += size;
    } finally {
      finish(); // claims waiting for room retry now that this block is evictable (or never came)
    }
  }

  private async writeFile(hash: string, bytes: Uint8Array): Promise<void> {
    // Includes a pending deletion of this very hash (evicted earlier), which would otherwise unlink
    // the file we are about to publish.
    await this.settleDeletions();
    const final = blockPath(this.root, hash);
    const tmp = tempPath(this.root, hash);
    // The cache never removes its folders: each is made once per process (a thread-pool call saved per block).
    const dir = path.dirname(final);
    if (!this.madeDirs.has(dir)) {
      await fsp.mkdir(dir, { recursive: true });
      this.madeDirs.add(dir);
    }
    try {
      await fsp.writeFile(tmp, bytes, { flag: 'wx', mode: 0o600 });
      await fsp.rename(tmp, final);
    } catch (err) {
      await fsp.rm(tmp, { force: true });
      throw err;
    }
  }

  /**
   * Makes `bytes` fit under the bound by evicting unpinned blocks. When even evicting every
   * unpinned block would not do, waits for puts under way (their blocks become evictable once
   * cached) and tries again; with none under way, throws CacheFullError having changed nothing.
   * The bytes are counted in the same tick as the check, so no other claim can slip in between:
   * as writing bytes when `write` is given (it settles when that write is over), else as reserved.
   */
  private async claim(bytes: number, write?: Promise<void>): Promise<void> {
    if (bytes > this.maxBytes) {
      throw new CacheFullError(`${bytes} bytes cannot fit in a cache of ${this.maxBytes} bytes`);
    }
    for (;;) {
      const over = this.bytes + this.writingBytes + this.reservedBytes + bytes - this.maxBytes;
      if (over <= this.bytes - this.pinnedBytes) {
        if (over > 0) this.evictUnpinned(over);
        if (write) {
          this.writingBytes += bytes;
          this.writes.add(write);
        } else {
          this.reservedBytes += bytes;
        }
        return;
      }
      if (this.writes.size === 0) {
        throw new CacheFullError(
          `cache full: ${bytes} bytes needed, ${this.pinnedBytes} of ${this.maxBytes} pinned and ${this.reservedBytes} reserved`,
        );
      }
      await Promise.race(this.writes);
      this.checkOpen();
    }
  }

  /** Evicts least-recently-used unpinned blocks totalling at least `atLeast` bytes (the caller checked they exist). */
  private evictUnpinned(atLeast: number): void {
    const victims: string[] = [];
    let freed = 0;
    for (const hash of this.index.rkeys()) {
      if (freed >= atLeast) break;
      if (this.pins.has(hash)) continue;
      victims.push(hash);
      freed += this.index.peek(hash)?.size ?? 0;
    }
    for (const hash of victims) this.evictBlock(hash);
  }

  private evictBlock(hash: string): void {
    this.evictions++;
    void this.deleteBlock(hash);
  }

  /** Out of the index now; the returned deletion (descriptor closed, file unlinked) is one every later claim and write waits for. */
  private deleteBlock(hash: string): Promise<void> {
    const fd = this.forget(hash);
    const file = blockPath(this.root, hash);
    const deletion = Promise.all([
      fd === undefined ? undefined : closeFd(fd),
      fsp.rm(file, { force: true }).catch(noop),
    ]).then(noop);
    this.deletions.add(deletion);
    void deletion.finally(() => this.deletions.delete(deletion));
    return deletion;
  }

  /** Drops a block from the index and the accounting; returns its open descriptor, now the caller's to close. */
  private forget(hash: string): number | undefined {
    const entry = this.index.peek(hash);
    if (!entry) return undefined;
    this.index.delete(hash);
    this.bytes -= entry.size;
    if (this.pins.has(hash)) this.pinnedBytes -= entry.size;
    const fd = this.fds.peek(hash);
    if (fd !== undefined) this.fds.delete(hash); // reason 'delete': dispose leaves it open
    return fd;
  }

  /** Waits for the deletions pending now (not ones started later). */
  private async settleDeletions(): Promise<void> {
    if (this.deletions.size > 0) await Promise.all([...this.deletions]);
  }

  /** Stamps blocks used this session with increasing file times, least recent first, so open() restores the order. */
  private async persistRecency(): Promise<void> {
    const used = [...this.index.rkeys()].filter((hash) => this.index.peek(hash)?.touched);
    const base = Math.max(Date.now() - used.length, this.newestAtOpenMs + 1);
    for (let i = 0; i < used.length; i += CLOSE_CONCURRENCY) {
      await Promise.all(
        used.slice(i, i + CLOSE_CONCURRENCY).map((hash, j) => {
          const when = new Date(base + i + j);
          return fsp.utimes(blockPath(this.root, hash), when, when).catch(noop);
        }),
      );
    }
  }

  private inBackground(p: Promise<void>): void {
    this.background.add(p);
    void p.finally(() => this.background.delete(p));
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('block cache is closed');
  }
}

function checkHash(hash: unknown): asserts hash is string {
  if (!isBlockHash(hash)) {
    const shown = typeof hash === 'string' ? JSON.stringify(hash.length > 80 ? `${hash.slice(0, 80)}…` : hash) : typeof hash;
    throw new TypeError(`not a block hash (64 lowercase hex digits): ${shown}`);
  }
}

function checkAmount(bytes: number): void {
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new RangeError(`byte count must be a non-negative integer, got ${bytes}`);
}

function checkRange(target: Buffer, targetOffset: number, length: number, blockOffset: number): void {
  for (const [name, value] of [['targetOffset', targetOffset], ['length', length], ['blockOffset', blockOffset]] as const) {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative integer, got ${value}`);
  }
  if (targetOffset + length > target.length) {
    throw new RangeError(`read of ${length} bytes at ${targetOffset} overruns a ${target.length}-byte buffer`);
  }
}

function closeFd(fd: number): Promise<void> {
  return new Promise((resolve) => fs.close(fd, () => resolve()));
}

function noop(): void {}
