import { randomUUID } from 'node:crypto';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { BlockCache } from '../../cache/block-cache.js';
import { FsError } from '../model/errors.js';
import { Extents } from '../model/extents.js';
import { writeFully } from '../blocks/file-io.js';

/** A staging file: bytes written on this mount that the server does not have yet. */
export interface StagingFile {
  path: string;
  fh: FileHandle;
  /** Byte ranges written to it (its data; the rest are holes). */
  extents: Extents;
  /** Bytes of the cache bound held for it (they pass to the log entry with the file). */
  reserved: number;
  /**
   * Handed to the operation log as a snapshot (a close(2) queued it): never written again. Its
   * session reads it through `fh` until its next change, which goes to a copy.
   */
  queued: boolean;
  /** Calls using `fh` right now (reads, writes, copies, fsync): it is closed only after them. */
  busy: number;
  /** Used by no session or handle any more: `fh` is closed once `busy` is 0. */
  retired: boolean;
  closed: boolean;
}

export const ZEROS = Buffer.alloc(4 * 1024 * 1024);
/** Chunk size when copying queued content into a new staging file. */
const COPY_CHUNK = 1024 * 1024;

/**
 * Staging files in the cache folder's `staging/`: made, shared between calls (a descriptor stays
 * open while used), copied sparsely, and counted against the cache bound by what they hold.
 */
export class StagingFiles {
  constructor(
    private readonly dir: string,
    private readonly cache: BlockCache,
  ) {}

  async create(): Promise<StagingFile> {
    const path = join(this.dir, randomUUID());
    return { path, fh: await open(path, 'w+', 0o600), extents: new Extents(), reserved: 0, queued: false, busy: 0, retired: false, closed: false };
  }

  /** A staging file that will never hold anything: closed, removed, its room given back. */
  async drop(f: StagingFile): Promise<void> {
    f.closed = true;
    await f.fh.close().catch(() => undefined);
    await rm(f.path, { force: true });
    this.giveBack(f);
  }

  /** The room a staging file holds in the cache bound goes back (it was not queued). */
  giveBack(f: StagingFile): void {
    this.cache.release(f.reserved);
    f.reserved = 0;
  }

  /** Runs `fn` on a staging file's descriptor, which stays open meanwhile. */
  async using<T>(f: StagingFile, fn: () => Promise<T>): Promise<T> {
    f.busy++;
    try {
      return await fn();
    } finally {
      f.busy--;
      this.settle(f);
    }
  }

  /** The file is no longer read or written through its session: its descriptor closes once unused. */
  retire(f: StagingFile): void {
    f.retired = true;
    this.settle(f);
  }

  private settle(f: StagingFile): void {
    if (!f.retired || f.busy > 0 || f.closed) return;
    f.closed = true;
    f.fh.close().catch(() => undefined);
  }

  async reserveUpTo(f: StagingFile, size: number): Promise<void> {
    if (size > f.reserved) await this.reserveMore(f, size - f.reserved);
  }

  /** Adds `bytes` to the room a staging file holds in the cache bound (additive: safe for concurrent calls). */
  async reserveMore(f: StagingFile, bytes: number): Promise<void> {
    try {
      await this.cache.reserve(bytes);
    } catch {
      throw new FsError('ENOSPC', 'the cache cannot hold more unsaved data');
    }
    f.reserved += bytes;
  }

  /** Cuts (or grows with a hole) a staging file to `size`; what is cut off gives back its room. */
  async cut(f: StagingFile, size: number): Promise<void> {
    await f.fh.truncate(size);
    f.extents.truncate(size);
    if (size < f.reserved) {
      this.cache.release(f.reserved - size);
      f.reserved = size;
    }
  }

  /** Writes `bytes` at `position` and records the range as data. */
  async write(f: StagingFile, bytes: Buffer, position: number): Promise<void> {
    await writeFully(f.fh, bytes, position);
    f.extents.add(position, position + bytes.length);
  }

  /**
   * Copies staged (not yet committed) content into another staging file: the first `size` bytes of
   * `src`, only its data `ranges` when known. Not copyFile: on most file systems that writes every
   * hole of a sparse file out as zeros (a 5 GiB `truncate -s` takes 5 GiB and half a minute).
   * Chunks that read as zeros are left as holes and reserve nothing.
   */
  async copyInto(to: StagingFile, src: FileHandle, ranges: readonly (readonly [number, number])[] | undefined, size: number): Promise<void> {
    await to.fh.truncate(size);
    const buf = Buffer.allocUnsafe(COPY_CHUNK);
    for (const [start, end] of ranges ?? [[0, size] as const]) {
      for (let pos = start; pos < Math.min(end, size); ) {
        const { bytesRead } = await src.read(buf, 0, Math.min(buf.length, Math.min(end, size) - pos), pos);
        if (bytesRead === 0) break;
        const chunk = buf.subarray(0, bytesRead);
        if (!chunk.equals(ZEROS.subarray(0, bytesRead))) {
          await this.reserveMore(to, bytesRead);
          await this.write(to, chunk, pos);
        } else to.extents.add(pos, pos + bytesRead); // held as a hole: still the file's own bytes (not its version's)
        pos += bytesRead;
      }
    }
  }
}
