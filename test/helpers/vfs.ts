import { constants as fsc } from 'node:fs';
import fs from 'node:fs/promises';
import os, { constants } from 'node:os';
import path from 'node:path';
import { BlockCache } from '../../cache/block-cache.js';
import { ChunkerPool } from '../../mount/chunker/pool.js';
import { StateStore } from '../../mount/state/store.js';
import type { ContentOp } from '../../mount/model/ops.js';
import { OpLog } from '../../mount/oplog/op-log.js';
import { Sender, type CommitResult } from '../../mount/sync/sender.js';
import { Syncer } from '../../mount/sync/syncer.js';
import { BlockSource, type BlockSourceOptions } from '../../mount/blocks/block-source.js';
import { FsError, toErrno, type Errno } from '../../mount/model/errors.js';
import { Tree } from '../../mount/node/tree.js';
import { fileSizeLimit } from '../../mount/vfs/posix.js';
import { Vfs } from '../../mount/vfs/vfs.js';
import { StratusClient } from '../../protocol/client.js';
import type { Manifest, NodeInfo, ServerConfig } from '../../protocol/types.js';

/**
 * The mount without FUSE: the same pieces `startMount` (mount/daemon.ts) assembles — state store,
 * block cache, chunker pool, tree, operation log and sender, syncer (no hints), block source, Vfs — over a real
 * server, on a cache folder that survives `close()` / `crash()` so a test can reassemble on it
 * (a restart). Tests must release their Vfs handles before closing.
 */

export interface VfsOptions {
  url: string;
  token: string;
  cacheDir: string;
  /** Bound of the block cache (default 256 MiB). */
  cacheSize?: number;
  device?: string;
  /** Wraps the client the mount uses (fault injection); the wrapper is what the pieces get. */
  wrapClient?: (client: StratusClient) => StratusClient;
  source?: BlockSourceOptions;
  retryMs?: number;
  parallelCommits?: number;
  parallelUploads?: number;
  /** Receives the queue's log lines (failures, conflicts). */
  log?: (msg: string) => void;
}

export interface VfsHarness {
  opts: VfsOptions;
  vfs: Vfs;
  /** The sender (it drains the operation log). */
  queue: Sender;
  log: OpLog;
  tree: Tree;
  cache: BlockCache;
  source: BlockSource;
  store: StateStore;
  pool: ChunkerPool;
  client: StratusClient;
  config: ServerConfig;
  cacheDir: string;
  stagingDir: string;
  /** Applies the change feed to the tree (emits `applied`); tests pull when they want to. */
  syncer: Syncer;
  /** Pulls the change feed into the tree (what the mount's sync does on a WebSocket hint). */
  pull(): Promise<void>;
  /** Orderly stop as the daemon does it after its drain (no drain here: call `queue.drain` first if wanted). */
  close(): Promise<void>;
  /**
   * A crash: the queue stops where it is (nothing drained, no tree flush); everything is then let go
   * so the folder can be reopened. What is on disk is what a killed process would leave.
   */
  crash(): Promise<void>;
}

/** Small chunks for in-process mounts: multi-block files stay small (the mount takes its parameters from /v1/config). */
export const SMALL_CHUNKING = { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 };

export async function assembleVfs(opts: VfsOptions): Promise<VfsHarness> {
  const base = new StratusClient({ server: opts.url, token: opts.token });
  const client = opts.wrapClient ? opts.wrapClient(base) : base;
  const closers: (() => Promise<unknown>)[] = [() => base.close()];
  const closeAll = async () => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
  };
  try {
    const [whoami, config] = await Promise.all([base.whoami(), base.config()]);
    const cacheDir = path.resolve(opts.cacheDir);
    const stagingDir = path.join(cacheDir, 'staging');
    await fs.mkdir(stagingDir, { recursive: true });

    const store = await StateStore.open(path.join(cacheDir, 'state'));
    closers.push(() => store.close());
    const identity = `${new URL(opts.url).origin} user ${whoami.user.id}`;
    const known = await store.getMeta('identity');
    if (known !== undefined && known !== identity) throw new Error(`cache folder ${cacheDir} belongs to ${known}, not ${identity}`);
    await store.setMeta('identity', identity);

    const cache = await BlockCache.open({ dir: cacheDir, maxBytes: opts.cacheSize ?? 256 * 1024 * 1024 });
    closers.push(() => cache.close());
    const pool = new ChunkerPool({ threads: 1 });
    closers.push(() => pool.close());
    const tree = new Tree(store, client);
    const treeFlush = () => tree.flush();
    closers.push(treeFlush);
    const cursor = await tree.load();

    const log = new OpLog(store, tree);
    await log.load((bytes) => cache.reserve(bytes));
    const source = new BlockSource(client, cache, pool, opts.source);
    const queue = new Sender({
      log,
      tree,
      store,
      client,
      pool,
      cache,
      source,
      config,
      device: opts.device ?? whoami.device.name,
      say: opts.log,
      retryMs: opts.retryMs,
      parallelCommits: opts.parallelCommits,
      parallelUploads: opts.parallelUploads,
    });
    closers.push(() => queue.stop());
    queue.start();
    // As the daemon: staging files no log entry owns are leftovers of files open when it died.
    const owned = new Set(log.list().flatMap((e) => (e.op.kind === 'content' ? [e.op.staging] : [])));
    for (const name of await fs.readdir(stagingDir)) {
      const p = path.join(stagingDir, name);
      if (!owned.has(p)) await fs.rm(p, { force: true });
    }

    // As the daemon: the change feed after the queue is loaded; a mount restarted while the server
    // is unreachable starts from its saved tree. No hints here: tests pull when they want to.
    if (cursor === undefined) throw new Error(`cache folder ${cacheDir}: the saved tree has no change cursor`);
    const syncer = new Syncer({ client, tree, cursor });
    closers.push(() => syncer.close());
    await syncer.pullNow().catch(() => undefined);
    const pull = () => syncer.pullNow();

    const vfs = new Vfs({ tree, log, client, source, cache, store, stagingDir, maxFileSize: fileSizeLimit(config) });

    let closing: Promise<void> | undefined;
    const close = () => (closing ??= closeAll());
    const crash = () =>
      (closing ??= (async () => {
        const i = closers.indexOf(treeFlush);
        if (i >= 0) closers.splice(i, 1);
        await closeAll();
      })());
    return { opts, vfs, queue, log, tree, cache, source, store, pool, client, config, cacheDir, stagingDir, syncer, pull, close, crash };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** Closes (orderly, or as a crash) and reassembles on the same cache folder, with `changes` to the options. */
export async function restartVfs(h: VfsHarness, how: 'close' | 'crash' = 'close', changes: Partial<VfsOptions> = {}): Promise<VfsHarness> {
  await (how === 'crash' ? h.crash() : h.close());
  return assembleVfs({ ...h.opts, ...changes });
}

/** A temp cache folder, removed at teardown. */
export async function tempCacheDir(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-vfs-'));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

/** The next `committed` event of the queue (rejects after `ms`). */
export function nextCommit(queue: Sender, ms = 10_000): Promise<CommitResult> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      queue.off('committed', on);
      reject(new Error(`no commit within ${ms} ms`));
    }, ms);
    const on = (r: CommitResult) => {
      clearTimeout(timer);
      resolve(r);
    };
    queue.once('committed', on);
  });
}

/** The saves waiting in the operation log, in order (creates, renames and the like left out). */
export function queuedSaves(h: Pick<VfsHarness, 'log'>): ContentOp[] {
  return h.log.list().flatMap((e) => (e.op.kind === 'content' ? [e.op] : []));
}

/** Drains the queue or throws (tests must not hang). */
export async function drained(queue: Sender, ms = 15_000): Promise<void> {
  if (!(await queue.drain(ms))) throw new Error(`commit queue not drained within ${ms} ms (${queue.pendingCount} pending)`);
}

// --- fault injection -----------------------------------------------------------------------------

type Method = 'getBlock' | 'putBlock' | 'checkBlocks' | 'commit' | 'manifest' | 'create' | 'update' | 'remove' | 'node';

/** What a dropped connection looks like to the client: not an ApiError, so transient. */
export function networkError(what: string): Error {
  return Object.assign(new Error(`connect ECONNREFUSED (injected, ${what})`), { code: 'ECONNREFUSED' });
}

/**
 * A switchboard in front of a StratusClient: per method, calls may be held at a gate (until
 * `open`), failed with a network error, or just counted. `wrap` is a `wrapClient` for assembleVfs.
 */
export class Faults {
  readonly calls = new Map<string, number>();
  /** Methods whose calls fail with a network error while listed. */
  readonly offline = new Set<string>();
  /** Per method, how many next calls fail with a network error. */
  readonly failNext = new Map<string, number>();
  /** Per method, how many next calls reach the server and then fail as if the reply was lost. */
  readonly loseReply = new Map<string, number>();
  /** Per method, how many next calls succeed before the method goes offline. */
  readonly allowThenFail = new Map<string, number>();
  private readonly gates = new Map<string, { open: Promise<void>; release: () => void; waiting: number; onWait: (() => void)[] }>();

  wrap = (client: StratusClient): StratusClient =>
    new Proxy(client, {
      get: (target, prop, receiver) => {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (typeof value !== 'function') return value;
        const name = String(prop);
        return async (...args: unknown[]) => {
          this.calls.set(name, (this.calls.get(name) ?? 0) + 1);
          const gate = this.gates.get(name);
          if (gate) {
            gate.waiting++;
            for (const f of gate.onWait.splice(0)) f();
            await gate.open;
          }
          const allowed = this.allowThenFail.get(name);
          if (allowed !== undefined) {
            if (allowed <= 0) throw networkError(name);
            this.allowThenFail.set(name, allowed - 1);
          }
          const n = this.failNext.get(name) ?? 0;
          if (n > 0) {
            this.failNext.set(name, n - 1);
            throw networkError(name);
          }
          if (this.offline.has(name)) throw networkError(name);
          const lose = this.loseReply.get(name) ?? 0;
          if (lose > 0) {
            this.loseReply.set(name, lose - 1);
            await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
            throw networkError(`${name}, reply lost`);
          }
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });

  count(method: Method): number {
    return this.calls.get(method) ?? 0;
  }

  /** Holds every later call of `method` until `open(method)`. */
  hold(method: Method): void {
    if (this.gates.has(method)) return;
    let release = () => undefined as void;
    const open = new Promise<void>((r) => (release = r));
    this.gates.set(method, { open, release, waiting: 0, onWait: [] });
  }

  /** Resolves once a call of `method` waits at its gate (rejects after `ms`). */
  waiting(method: Method, ms = 10_000): Promise<void> {
    const gate = this.gates.get(method);
    if (!gate) return Promise.reject(new Error(`${method} is not held`));
    if (gate.waiting > 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${method} call within ${ms} ms`)), ms);
      gate.onWait.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  open(method: Method): void {
    const gate = this.gates.get(method);
    this.gates.delete(method);
    gate?.release();
  }
}

/** Resolves when `pred(line)` holds for a line logged through the returned `log` (rejects after `ms`). */
export function logWatcher(): { log: (msg: string) => void; lines: string[]; until(pred: (line: string) => boolean, ms?: number): Promise<string> } {
  const lines: string[] = [];
  const waiters: { pred: (l: string) => boolean; resolve: (l: string) => void }[] = [];
  return {
    lines,
    log(msg) {
      lines.push(msg);
      if (process.env.STRATUS_TEST_VERBOSE) process.stderr.write(`[mount] ${msg}\n`);
      for (const w of [...waiters]) {
        if (w.pred(msg)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(msg);
        }
      }
    },
    until(pred, ms = 10_000) {
      const hit = lines.find(pred);
      if (hit !== undefined) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no matching log line within ${ms} ms; got: ${lines.join(' | ')}`)), ms);
        waiters.push({
          pred,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
      });
    },
  };
}

// --- a device whose network can be cut -----------------------------------------------------------

/** Every client call the mount makes: a device that is down fails them all with a network error. */
const CLIENT_CALLS = ['getBlock', 'putBlock', 'checkBlocks', 'commit', 'manifest', 'create', 'update', 'remove', 'node', 'children', 'allChildren', 'changes', 'changesHead', 'root', 'versions', 'history'];

/** A mount (`h`, replaced by a restart) with a network switch. */
export interface Device {
  h: VfsHarness;
  faults: Faults;
  /** Cuts the network: every client call fails, and the mount believes the server away. */
  down(): void;
  up(): void;
}

/**
 * A mount of `token`'s drive on a fresh cache folder, named `name` in conflicted copies, retrying
 * fast, with its root folder listed (as a mount in use has it: an unlisted folder is EIO offline).
 * Closed and removed at teardown.
 */
export async function switchableDevice(t: { teardown(fn: () => unknown): void }, url: string, token: string, name: string): Promise<Device> {
  const faults = new Faults();
  const cacheDir = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-offline-'));
  const dev: Device = {
    h: await assembleVfs({ url, token, cacheDir, device: name, wrapClient: faults.wrap, retryMs: 20 }),
    faults,
    down() {
      for (const c of CLIENT_CALLS) faults.offline.add(c);
    },
    // As the daemon does when its syncer sees the server again: what waits on a retry timer goes now.
    up() {
      faults.offline.clear();
      dev.h.queue.retryNow();
    },
  };
  await dev.h.vfs.readdir('/');
  t.teardown(async () => {
    dev.up();
    await dev.h.close();
    await fs.rm(cacheDir, { recursive: true, force: true });
  });
  return dev;
}

// --- file helpers over a Vfs ---------------------------------------------------------------------

/** The subset of tap's Test `fails` uses (keeps this module free of tap's types). */
interface Asserts {
  fail(message: string): unknown;
  equal(found: unknown, wanted: unknown, message: string): unknown;
}

/** Asserts that `p` fails with errno `code` (as the FUSE adapter would answer it). */
export async function fails(t: Asserts, p: Promise<unknown>, code: Errno, what: string): Promise<void> {
  try {
    await p;
    t.fail(`${what}: expected ${code}, but it succeeded`);
  } catch (err) {
    t.equal(toErrno(err), constants.errno[code], `${what} → ${code}${err instanceof FsError ? '' : ` (${String(err)})`}`);
  }
}

/** Writes `bytes` as the whole content of `path` (create or O_TRUNC), in `pieces` writes, and closes it. */
export async function writeAll(vfs: Vfs, p: string, bytes: Buffer, opts: { create?: boolean; pieces?: number } = {}): Promise<void> {
  const fh = opts.create ? await vfs.create(p, 0o644) : await vfs.open(p, fsc.O_WRONLY | fsc.O_TRUNC);
  try {
    const pieces = Math.max(1, opts.pieces ?? 1);
    const step = Math.ceil(bytes.length / pieces) || 1;
    for (let off = 0; off < bytes.length; off += step) {
      const part = bytes.subarray(off, off + step);
      await vfs.write(fh, part, part.length, off);
    }
  } finally {
    await vfs.release(fh);
  }
}

/** Reads `length` bytes at `position` through an open handle (until EOF). */
export async function readFh(vfs: Vfs, fh: number, length: number, position = 0): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const part = Buffer.alloc(Math.min(length - got, 1024 * 1024));
    const n = await vfs.read(fh, part, part.length, position + got);
    if (n === 0) break;
    part.copy(buf, got, 0, n);
    got += n;
  }
  return buf.subarray(0, got);
}

/** The whole content of `path` as the mount shows it. */
export async function readAll(vfs: Vfs, p: string): Promise<Buffer> {
  const { size } = await vfs.getattr(p);
  const fh = await vfs.open(p, fsc.O_RDONLY);
  try {
    return await readFh(vfs, fh, size + 1);
  } finally {
    await vfs.release(fh);
  }
}

/** The bytes of a version as the server holds them (manifest + blocks). */
export async function serverBytes(client: StratusClient, nodeId: string, version: number | 'head' = 'head'): Promise<{ bytes: Buffer; manifest: Manifest }> {
  const manifest = await client.manifest(nodeId, version);
  const parts: Buffer[] = [];
  for (const b of manifest.blocks) parts.push(await client.getBlock(b.hash));
  return { bytes: Buffer.concat(parts), manifest };
}

/** The live child `name` of the user's root folder (or of `dirId`) on the server. */
export async function serverChild(client: StratusClient, name: string, dirId?: string): Promise<NodeInfo | undefined> {
  const parent = dirId ?? (await client.root()).id;
  return (await client.allChildren(parent)).find((c) => c.name === name);
}
