/**
 * Worker-thread entry of the ChunkerPool (pool.ts). Chunking and hashing never run on the main
 * thread, whose event loop serves the FUSE callbacks (DESIGN §6).
 *
 * Messages in:  { id, type: 'chunkFile', path, start, params }
 *               { id, type: 'hash', bytes: ArrayBuffer }           (transferred in)
 *               { id, type: 'hashFile', path, size }
 *               { id, type: 'crash' }                              (test hook: uncaught error)
 * Messages out: { id, ok: true, result } | { id, ok: false, error: SerializedError }
 *   chunkFile result: ChunkRef[] ({hash, size, offset}, offsets absolute in the file)
 *   hash result:      { hash, bytes }                               (bytes transferred back)
 *   hashFile result:  { size, hash, bytes }                         (bytes transferred back)
 *
 * The worker handles messages concurrently: chunkFile awaits each file read, so a `hash` message
 * that arrives meanwhile is answered between two reads instead of waiting for a whole file.
 *
 * Memory is flat whatever the file size: chunkFile reads the file in READ_SIZE pieces into two
 * buffers the worker owns (one being cut and hashed while the next read is in flight) and feeds
 * BLAKE3 incrementally, so a chunk never has to be in memory whole. blake3's native build crashes
 * on SharedArrayBuffer views: everything it hashes here is in ordinary worker-owned memory.
 */
import { open } from 'node:fs/promises';
import { parentPort } from 'node:worker_threads';
import { createHash } from 'blake3';
import type { ChunkingParams } from '../../protocol/types.js';
import { FastCdcCutter } from './fastcdc.js';

export interface ChunkRef {
  hash: string;
  size: number;
  offset: number;
}

/**
 * Part of a file to cut (re-cutting an edited file from its first changed block): stop reading at
 * `end` (and, unless `final`, leave the bytes after the last cut unemitted: the caller goes on from
 * there); stop at the first cut at or after `resyncAfter` that lands on one of `resyncAt` (block
 * boundaries of the previous version: from there on its blocks are the file's again).
 */
export interface ChunkWindow {
  end?: number;
  final?: boolean;
  resyncAfter?: number;
  resyncAt?: number[];
}

export type WorkerRequest =
  | { id: number; type: 'chunkFile'; path: string; start: number; params: ChunkingParams; window?: ChunkWindow }
  | { id: number; type: 'hash'; bytes: ArrayBuffer }
  | { id: number; type: 'hashFile'; path: string; size: number }
  | { id: number; type: 'crash' };

export interface SerializedError {
  message: string;
  name: string;
  code?: string;
  errno?: number;
  syscall?: string;
  path?: string;
  stack?: string;
}

/** A file read and hashed whole; `hash` is '' (and `bytes` empty) when the file is not of the size asked for. */
export interface HashedFile {
  size: number;
  hash: string;
  bytes: ArrayBuffer;
}

export type WorkerResponse =
  | { id: number; ok: true; result: ChunkRef[] | { hash: string; bytes: ArrayBuffer } | HashedFile }
  | { id: number; ok: false; error: SerializedError };

/** Size of one file read. Two such buffers per running chunkFile. */
export const READ_SIZE = 4 * 1024 * 1024;

/** Free read-buffer pairs, reused across tasks (one pair per concurrently running chunkFile). */
const freePairs: Array<[Buffer, Buffer]> = [];

function takePair(): [Buffer, Buffer] {
  // allocUnsafeSlow: a dedicated, non-pooled, non-shared ArrayBuffer.
  return freePairs.pop() ?? [Buffer.allocUnsafeSlow(READ_SIZE), Buffer.allocUnsafeSlow(READ_SIZE)];
}

export async function chunkFile(path: string, start: number, params: ChunkingParams, window: ChunkWindow = {}): Promise<ChunkRef[]> {
  if (!Number.isSafeInteger(start) || start < 0) throw new RangeError(`start must be a non-negative integer, got ${start}`);
  const cutter = new FastCdcCutter(params); // validates params before the file is opened
  const fh = await open(path, 'r');
  const pair = takePair();
  let pending: Promise<{ bytesRead: number }> | null = null;
  const stopReading = window.end ?? Infinity;
  const resync = new Set(window.resyncAt ?? []);
  const resyncAfter = window.resyncAfter ?? Infinity;
  const readAt = (buf: Buffer, at: number) => fh.read(buf, 0, Math.max(0, Math.min(READ_SIZE, stopReading - at)), at);
  try {
    const refs: ChunkRef[] = [];
    const ends: number[] = [];
    let hasher = createHash();
    let chunkStart = 0; // relative to `start`, like the cutter's offsets
    let pos = 0; // relative offset of the next byte to read
    let cur = 0;
    pending = readAt(pair[cur]!, start + pos);
    for (;;) {
      const { bytesRead } = await pending;
      pending = null;
      if (bytesRead === 0) break;
      const piece = pair[cur]!.subarray(0, bytesRead);
      const pieceStart = pos;
      pos += bytesRead;
      cur ^= 1;
      pending = readAt(pair[cur]!, start + pos); // prefetch while this piece is cut and hashed
      ends.length = 0;
      cutter.push(piece, ends);
      let p = 0;
      for (const end of ends) {
        const e = end - pieceStart;
        if (e > p) hasher.update(piece.subarray(p, e));
        refs.push({ hash: hasher.digest().toString('hex'), size: end - chunkStart, offset: start + chunkStart });
        hasher = createHash();
        chunkStart = end;
        p = e;
        if (start + end >= resyncAfter && resync.has(start + end)) return refs;
      }
      if (p < bytesRead) hasher.update(piece.subarray(p));
    }
    if (window.final === false) return refs;
    const last = cutter.finish();
    if (last !== null) {
      refs.push({ hash: hasher.digest().toString('hex'), size: last - chunkStart, offset: start + chunkStart });
    }
    return refs;
  } finally {
    // Never hand a buffer back (or close the file) while a read may still write into it.
    if (pending) await pending.catch(() => undefined);
    freePairs.push(pair);
    await fh.close();
  }
}

/**
 * Reads a whole file of `size` bytes into memory this worker owns and hashes it, so the thread
 * that asked pays neither the read nor the hash. A file of another size is not read.
 */
export async function hashFile(path: string, size: number): Promise<HashedFile> {
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`size must be a non-negative integer, got ${size}`);
  const fh = await open(path, 'r');
  try {
    const found = (await fh.stat()).size;
    if (found !== size) return { size: found, hash: '', bytes: new ArrayBuffer(0) };
    const buf = Buffer.allocUnsafeSlow(size); // its own ArrayBuffer: transferable, never shared
    let done = 0;
    while (done < size) {
      const { bytesRead } = await fh.read(buf, done, size - done, done);
      if (bytesRead === 0) return { size: done, hash: '', bytes: new ArrayBuffer(0) }; // shrank meanwhile
      done += bytesRead;
    }
    return { size, hash: createHash().update(buf).digest().toString('hex'), bytes: buf.buffer as ArrayBuffer };
  } finally {
    await fh.close();
  }
}

export function hashBytes(bytes: ArrayBuffer): string {
  return createHash().update(new Uint8Array(bytes)).digest().toString('hex');
}

function serializeError(err: unknown): SerializedError {
  if (err instanceof Error) {
    const e = err as NodeJS.ErrnoException;
    const out: SerializedError = { message: e.message, name: e.name };
    if (e.stack !== undefined) out.stack = e.stack;
    if (typeof e.code === 'string') out.code = e.code;
    if (typeof e.errno === 'number') out.errno = e.errno;
    if (typeof e.syscall === 'string') out.syscall = e.syscall;
    if (typeof e.path === 'string') out.path = e.path;
    return out;
  }
  return { message: String(err), name: 'Error' };
}

async function handle(msg: WorkerRequest): Promise<void> {
  const port = parentPort!;
  try {
    switch (msg.type) {
      case 'chunkFile': {
        const result = await chunkFile(msg.path, msg.start, msg.params, msg.window);
        port.postMessage({ id: msg.id, ok: true, result } satisfies WorkerResponse);
        return;
      }
      case 'hash': {
        const hash = hashBytes(msg.bytes);
        port.postMessage({ id: msg.id, ok: true, result: { hash, bytes: msg.bytes } } satisfies WorkerResponse, [msg.bytes]);
        return;
      }
      case 'hashFile': {
        const result = await hashFile(msg.path, msg.size);
        port.postMessage({ id: msg.id, ok: true, result } satisfies WorkerResponse, [result.bytes]);
        return;
      }
      case 'crash':
        setImmediate(() => {
          throw new Error('chunker worker: crash requested (test hook)');
        });
        return;
      default:
        throw new Error(`chunker worker: unknown task ${(msg as { type?: unknown }).type as string}`);
    }
  } catch (err) {
    port.postMessage({ id: msg.id, ok: false, error: serializeError(err) } satisfies WorkerResponse);
  }
}

if (parentPort) {
  parentPort.on('message', (msg: WorkerRequest) => {
    void handle(msg);
  });
}
