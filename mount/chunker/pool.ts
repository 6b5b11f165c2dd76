/**
 * ChunkerPool: FastCDC chunking + BLAKE3 hashing in worker_threads, so the mount's event loop
 * (which runs every FUSE callback) never does it (DESIGN §6, notes/fuse-native.md).
 *
 * A small hand-rolled pool rather than piscina: it needs per-task transfer lists both ways, a
 * scheduling rule piscina has no notion of (one chunkFile per worker, while short `hash` tasks go
 * straight to a worker and are answered between that worker's file reads), and ~200 lines.
 *
 * - Workers start on demand, up to `threads`, and are unref'd while idle (a forgotten pool does
 *   not keep the process alive; a pending task does).
 * - chunkFile: at most one per worker at a time; more wait in a FIFO queue.
 * - hash, hashFile: sent at once to the least-busy worker (preferring one that is not chunking;
 *   starting one if allowed). A worker busy chunking answers it between two reads (~1 ms).
 * - A task's error rejects its promise with an Error carrying the worker's message, name, code,
 *   errno, syscall and path (e.g. ENOENT for a missing file).
 * - A worker that dies rejects the tasks it had and is replaced: the next task starts a fresh
 *   one. Workers that die before coming online 3 times in a row fail the queued tasks too, so a
 *   missing build does not loop forever.
 */
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { BlockRef, ChunkingParams } from '../../protocol/types.js';
import type { ChunkWindow, HashedFile, SerializedError, WorkerRequest, WorkerResponse } from './worker.js';

export type ChunkRef = BlockRef & { offset: number };

export interface ChunkerPoolOptions {
  /** Worker threads; default max(1, min(4, availableParallelism - 1)). */
  threads?: number;
}

export interface ChunkFileOptions extends ChunkWindow {
  /** Byte offset to start chunking at (the first chunk starts there); default 0. */
  start?: number;
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
type Payload = DistributiveOmit<WorkerRequest, 'id'>;

interface Task {
  id: number;
  kind: 'chunk' | 'hash' | 'other';
  payload: Payload;
  transfer: ArrayBuffer[];
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

interface Slot {
  worker: Worker;
  online: boolean;
  inflight: Map<number, Task>;
  chunking: number;
  /** First 'error' event of this worker, reported to its in-flight tasks on exit. */
  error: Error | null;
}

/**
 * The compiled worker. From dist/ (production) it is the sibling worker.js; from the TS sources
 * (tests run through tap's TS loader, which a worker would not have) it is the compiled copy in
 * <root>/dist/mount/chunker/, so `npx tsc -p .` must have run.
 */
export function workerUrl(): URL {
  return fileURLToPath(import.meta.url).endsWith('.ts')
    ? new URL('../../dist/mount/chunker/worker.js', import.meta.url)
    : new URL('./worker.js', import.meta.url);
}

function defaultThreads(): number {
  return Math.max(1, Math.min(4, os.availableParallelism() - 1));
}

function deserializeError(e: SerializedError): Error {
  const Ctor = e.name === 'RangeError' ? RangeError : e.name === 'TypeError' ? TypeError : Error;
  const err = new Ctor(e.message) as NodeJS.ErrnoException;
  err.name = e.name;
  if (e.code !== undefined) err.code = e.code;
  if (e.errno !== undefined) err.errno = e.errno;
  if (e.syscall !== undefined) err.syscall = e.syscall;
  if (e.path !== undefined) err.path = e.path;
  if (e.stack !== undefined) err.stack = `${e.stack}\n    (in chunker worker)`;
  return err;
}

/** The ArrayBuffer to send for `bytes`: its own buffer when `bytes` spans all of it, else a copy. */
function ownArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  const ab = bytes.buffer;
  if (ab instanceof ArrayBuffer && bytes.byteOffset === 0 && bytes.byteLength === ab.byteLength) return ab;
  return copyArrayBuffer(bytes);
}

function copyArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  const copy = new ArrayBuffer(bytes.byteLength);
  new Uint8Array(copy).set(bytes);
  return copy;
}

const MAX_STARTUP_FAILURES = 3;

export class ChunkerPool {
  readonly threads: number;
  private readonly url: URL;
  private readonly slots: Slot[] = [];
  private readonly queue: Task[] = [];
  private nextId = 1;
  private closed = false;
  private startupFailures = 0;
  /** Bytes read and hashed by chunkFile and hashFile so far (`stratus status --json`, the bench). */
  hashedBytes = 0;

  constructor(opts: ChunkerPoolOptions = {}) {
    const threads = opts.threads ?? defaultThreads();
    if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`threads must be a positive integer, got ${threads}`);
    this.threads = threads;
    this.url = workerUrl();
  }

  /** Number of live workers (for tests and stats). */
  get size(): number {
    return this.slots.length;
  }

  /**
   * Cuts the file with FastCDC and hashes each chunk with BLAKE3, in a worker, streaming (flat
   * memory). Offsets are absolute in the file; sizes add up to the bytes from `start` to EOF.
   */
  chunkFile(path: string, params: ChunkingParams, opts: ChunkFileOptions = {}): Promise<ChunkRef[]> {
    const { start = 0, ...window } = opts;
    const payload: Payload = { type: 'chunkFile', path, start, params: { min: params.min, avg: params.avg, max: params.max }, window };
    return (this.submit('chunk', payload, []) as Promise<ChunkRef[]>).then((chunks) => {
      for (const c of chunks) this.hashedBytes += c.size;
      return chunks;
    });
  }

  /**
   * BLAKE3 hex of `bytes`, computed in a worker. To avoid copying, the memory is transferred to
   * the worker and back when `bytes` spans its whole ArrayBuffer (e.g. Buffer.from(arrayBuffer),
   * large Buffer.alloc*): `bytes` is then DETACHED (length 0) after the call, so use the returned
   * `bytes` (same contents). Otherwise (a slice, a pooled small Buffer, shared memory) it is copied.
   */
  hash(bytes: Uint8Array): Promise<{ hash: string; bytes: Buffer }> {
    const ab = ownArrayBuffer(bytes);
    return this.submit('hash', { type: 'hash', bytes: ab }, [ab]).then((r) => {
      const { hash, bytes: back } = r as { hash: string; bytes: ArrayBuffer };
      return { hash, bytes: Buffer.from(back) };
    });
  }

  /**
   * Reads the file at `path` whole and hashes it, both in a worker (the calling thread pays a
   * message round trip, not the read nor the hash). When the file is not `size` bytes long it is
   * not read: `hash` is '' and `size` is what was found. Rejects like fs does (ENOENT…).
   */
  hashFile(path: string, size: number): Promise<{ size: number; hash: string; bytes: Buffer }> {
    return this.submit('hash', { type: 'hashFile', path, size }, []).then((r) => {
      const { size: found, hash, bytes } = r as HashedFile;
      if (hash !== '') this.hashedBytes += found;
      return { size: found, hash, bytes: Buffer.from(bytes) };
    });
  }

  /** Starts a worker now (and waits until it answers), so the first read after a mount does not pay for it. */
  async warm(): Promise<void> {
    await this.hash(new Uint8Array(0));
  }

  /** Test hook: makes one worker die of an uncaught exception (its in-flight tasks reject). */
  crashOneWorkerForTest(): void {
    const slot = this.slots[0];
    if (!slot) throw new Error('no worker to crash');
    slot.worker.postMessage({ id: 0, type: 'crash' } satisfies WorkerRequest);
  }

  /** Rejects queued and running tasks and stops the workers. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const closedError = () => new Error('ChunkerPool closed');
    for (const task of this.queue.splice(0)) task.reject(closedError());
    const slots = this.slots.splice(0);
    await Promise.all(
      slots.map(async (slot) => {
        for (const task of slot.inflight.values()) task.reject(closedError());
        slot.inflight.clear();
        await slot.worker.terminate();
      }),
    );
  }

  private submit(kind: Task['kind'], payload: Payload, transfer: ArrayBuffer[]): Promise<unknown> {
    if (this.closed) return Promise.reject(new Error('ChunkerPool closed'));
    return new Promise((resolve, reject) => {
      const task: Task = { id: this.nextId++, kind, payload, transfer, resolve, reject };
      if (kind === 'chunk') {
        this.queue.push(task);
        this.pump();
      } else {
        this.send(this.pickForHash(), task);
      }
    });
  }

  /** Starts queued chunkFile tasks on workers that are not chunking. */
  private pump(): void {
    while (this.queue.length > 0 && !this.closed) {
      let slot = this.slots.filter((s) => s.chunking === 0).sort((a, b) => a.inflight.size - b.inflight.size)[0];
      if (!slot && this.slots.length < this.threads) slot = this.spawn();
      if (!slot) return;
      this.send(slot, this.queue.shift()!);
    }
  }

  private pickForHash(): Slot {
    const idle = this.slots.filter((s) => s.chunking === 0).sort((a, b) => a.inflight.size - b.inflight.size)[0];
    if (idle) return idle;
    if (this.slots.length < this.threads) return this.spawn();
    return [...this.slots].sort((a, b) => a.inflight.size - b.inflight.size)[0]!;
  }

  private send(slot: Slot, task: Task): void {
    slot.inflight.set(task.id, task);
    if (task.kind === 'chunk') slot.chunking++;
    slot.worker.ref();
    const msg = { id: task.id, ...task.payload } as WorkerRequest;
    try {
      slot.worker.postMessage(msg, task.transfer);
    } catch (err) {
      // An untransferable ArrayBuffer (e.g. marked so by its owner): send a copy instead.
      if (msg.type === 'hash') {
        const copy = copyArrayBuffer(new Uint8Array(msg.bytes));
        try {
          slot.worker.postMessage({ ...msg, bytes: copy }, [copy]);
          return;
        } catch (err2) {
          err = err2;
        }
      }
      this.finish(slot, task.id);
      task.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** Removes a task from its worker's books; returns it. */
  private finish(slot: Slot, id: number): Task | undefined {
    const task = slot.inflight.get(id);
    if (!task) return undefined;
    slot.inflight.delete(id);
    if (task.kind === 'chunk') slot.chunking--;
    if (slot.inflight.size === 0) slot.worker.unref();
    return task;
  }

  private spawn(): Slot {
    const worker = new Worker(this.url, { execArgv: [] });
    const slot: Slot = { worker, online: false, inflight: new Map(), chunking: 0, error: null };
    worker.unref();
    worker.on('online', () => {
      slot.online = true;
      this.startupFailures = 0;
    });
    worker.on('message', (res: WorkerResponse) => {
      const task = this.finish(slot, res.id);
      if (task) {
        if (res.ok) task.resolve(res.result);
        else task.reject(deserializeError(res.error));
      }
      this.pump();
    });
    worker.on('error', (err) => {
      slot.error ??= err;
    });
    worker.on('exit', (code) => this.onExit(slot, code));
    this.slots.push(slot);
    return slot;
  }

  private onExit(slot: Slot, code: number): void {
    const i = this.slots.indexOf(slot);
    if (i < 0) return; // removed by close()
    this.slots.splice(i, 1);
    const cause = slot.error ?? new Error(`chunker worker exited with code ${code}`);
    const err = slot.online
      ? new Error(`chunker worker died: ${cause.message}`, { cause })
      : new Error(`chunker worker failed to start (${fileURLToPath(this.url)}; is the project built?): ${cause.message}`, { cause });
    for (const task of slot.inflight.values()) task.reject(err);
    slot.inflight.clear();
    if (!slot.online && ++this.startupFailures >= MAX_STARTUP_FAILURES) {
      this.startupFailures = 0;
      for (const task of this.queue.splice(0)) task.reject(err);
      return;
    }
    this.pump(); // replaces the worker if tasks are waiting
  }
}
