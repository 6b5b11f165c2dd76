import bytes from 'bytes';
import pLimit from 'p-limit';
import type { BlockCache } from '../../cache/block-cache.js';
import type { BlockRef } from '../../protocol/types.js';
import type { LocalNode } from '../model/local-node.js';
import type { Tree } from '../node/tree.js';
import type { StateStore } from '../state/store.js';
import type { Manifests } from '../vfs/manifests.js';
import { isWithin, pathOf, subtreeFiles } from './subtree.js';

/** Where a pin's fetch is: files whose every block is cached, and bytes of its blocks cached. */
export interface PinProgress {
  files: number;
  totalFiles: number;
  bytes: number;
  totalBytes: number;
}

/** A pinned folder or file, as `stratus pin` and `stratus status` show it. */
export interface PinSummary {
  path: string;
  files: number;
  /** Bytes of its distinct blocks. */
  bytes: number;
}

/** A pin or unpin refused for a reason to show as is (one line): a bad path, the cache bound. */
export class PinError extends Error {
  override readonly name = 'PinError';
}

export interface PinManagerOptions {
  tree: Tree;
  store: StateStore;
  cache: BlockCache;
  manifests: Manifests;
  /** Fetches one block, verifies it and puts it in the cache (BlockSource.fetch). */
  fetchBlock: (hash: string, size: number) => Promise<unknown>;
  log?: (msg: string) => void;
  /** Blocks fetched at once by one pin (the block source caps the whole mount too). */
  parallel?: number;
}

/** The blocks of the version a pinned file shows. */
interface Kept {
  sid: string;
  version: number;
  blocks: readonly BlockRef[];
}

/** The state store's meta key holding the pinned inode numbers (JSON array). */
const META_KEY = 'pins';
/** At most one progress report per this many ms (and one at the end). */
const PROGRESS_EVERY_MS = 100;

/**
 * Pins ("available offline", DESIGN §7): folders and files whose every block is kept in the cache.
 * The pinned set is the inode numbers of the pinned roots, kept in the state store (inode numbers
 * outlive renames and restarts). Everything under a root is kept: each distinct block of the
 * version every file shows is pinned once in the cache (`BlockCache.pin`, the mechanism that keeps
 * blocks of files being written: pinned blocks are never evicted), and fetched when missing.
 *
 * What arrives later (`changed()`: the change feed applied a page, a save was committed) is kept
 * too: the pinned subtrees are walked again, files whose version moved get the new version's
 * blocks pinned and fetched, the old version's blocks are unpinned (ordinary, evictable cache
 * entries again). Unpinning a root does the same for what only it kept.
 *
 * The cache bound holds: a pin whose distinct blocks, with the other pins', exceed the cache size
 * is refused before anything is fetched. What arrives later under a pin and would exceed it is not
 * kept (logged). Pins, unpins and refreshes run one at a time; a pin's fetch does not stop when the
 * asking command goes away (the drive goes on; a later refresh fetches what a failure left out).
 */
export class PinManager {
  private readonly roots = new Set<number>();
  private readonly kept = new Map<number, Kept>();
  /** Blocks this manager pinned in the cache (once each), with their sizes. */
  private readonly held = new Map<string, number>();
  private queue: Promise<unknown> = Promise.resolve();
  private refreshQueued = false;
  private closed = false;
  private warnedOver = false;

  constructor(private readonly o: PinManagerOptions) {}

  /**
   * Loads the saved pins and pins the blocks they keep that this mount knows of without the
   * server (saved tree, saved manifests), so nothing evicts them before the first refresh.
   */
  async restore(): Promise<void> {
    const saved = await this.o.store.getMeta(META_KEY);
    if (saved !== undefined) {
      for (const ino of JSON.parse(saved) as number[]) if (this.o.tree.get(ino)) this.roots.add(ino);
    }
    await this.exclusive(() => this.settle({ list: false, fetch: false }));
  }

  /** Something under a pin may have changed (a remote change, a commit): kept up to date soon, once. */
  changed(): void {
    if (this.closed || this.refreshQueued || this.roots.size === 0) return;
    this.refreshQueued = true;
    void this.exclusive(async () => {
      this.refreshQueued = false;
      if (this.closed) return;
      await this.settle({ list: true, fetch: true });
    }).catch((err: unknown) => this.o.log?.(`pins: keeping pinned files up to date failed: ${(err as Error).message}`));
  }

  /** Pinned roots, with what each keeps. */
  list(): PinSummary[] {
    const out: PinSummary[] = [];
    for (const root of this.roots) {
      const path = pathOf(this.o.tree, root);
      if (path === undefined) continue;
      const seen = new Set<string>();
      let files = 0;
      let size = 0;
      for (const [ino, k] of this.kept) {
        if (!isWithin(this.o.tree, ino, root)) continue;
        files++;
        for (const b of k.blocks) if (!seen.has(b.hash)) (seen.add(b.hash), (size += b.size));
      }
      out.push({ path, files, bytes: size });
    }
    return out.sort((a, b) => (a.path < b.path ? -1 : 1));
  }

  /** The node is a pinned root or under one. */
  isPinned(ino: number): boolean {
    for (const root of this.roots) if (isWithin(this.o.tree, ino, root)) return true;
    return false;
  }

  /** A file under a pin whose every block of the version it shows is cached. */
  isKept(node: LocalNode): boolean {
    const k = this.kept.get(node.ino);
    return k !== undefined && k.sid === node.sid && k.version === node.headVersion && k.blocks.every((b) => this.o.cache.has(b.hash));
  }

  /** Bytes the pins keep (distinct blocks). */
  get pinnedBytes(): number {
    let total = 0;
    for (const size of this.held.values()) total += size;
    return total;
  }

  /**
   * Pins the node at `path` (a path in the drive, "/a/b"): fetches every block of every file under
   * it, telling `progress`, and keeps them. Pinning again what is pinned fetches what is missing.
   */
  pin(path: string, progress?: (p: PinProgress) => void): Promise<PinSummary & { fetchedBytes: number }> {
    return this.exclusive(async () => {
      const node = await this.resolve(path);
      const mine = await this.filesOf(node, { list: true });
      const others = new Map<number, Kept>();
      for (const root of this.roots) {
        if (root === node.ino) continue;
        for (const [ino, k] of await this.filesOf(this.o.tree.get(root), { list: false })) others.set(ino, k);
      }
      const mineBlocks = distinct(mine.values());
      const otherBlocks = distinct(others.values(), mineBlocks);
      const mineBytes = sum(mineBlocks);
      const otherBytes = sum(otherBlocks);
      const max = this.o.cache.maxBytes;
      if (mineBytes + otherBytes > max) {
        const withOthers = otherBytes > 0 ? ` and the other pins ${size(otherBytes)} more` : '';
        throw new PinError(`cannot pin ${path}: its ${mine.size} file(s) take ${size(mineBytes)}${withOthers}, over the cache size of ${size(max)} (--cache-size)`);
      }
      this.roots.add(node.ino);
      await this.save();
      for (const [ino, k] of mine) this.kept.set(ino, k);
      await this.settle({ list: false, fetch: false });
      const fetched = await this.fetch([...mine.values()], mineBlocks, progress);
      return { path, files: mine.size, bytes: mineBytes, fetchedBytes: fetched };
    });
  }

  /** Releases the pin of `path`: its blocks become ordinary cache entries (unless another pin keeps them). */
  unpin(path: string): Promise<PinSummary> {
    return this.exclusive(async () => {
      const node = await this.resolve(path);
      if (!this.roots.has(node.ino)) {
        const holder = [...this.roots].find((r) => isWithin(this.o.tree, node.ino, r));
        const where = holder === undefined ? undefined : pathOf(this.o.tree, holder);
        throw new PinError(where !== undefined ? `${path} is not pinned itself but as part of ${where}: unpin that` : `${path} is not pinned`);
      }
      const released = this.list().find((s) => s.path === pathOf(this.o.tree, node.ino)) ?? { path, files: 0, bytes: 0 };
      this.roots.delete(node.ino);
      await this.save();
      await this.settle({ list: false, fetch: false });
      return { ...released, path };
    });
  }

  /** No more refreshes or fetches; waits for the blocks in flight. */
  async close(): Promise<void> {
    this.closed = true;
    await this.queue.catch(() => undefined);
  }

  // ---- internals ----

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async resolve(path: string): Promise<LocalNode> {
    if (!path.startsWith('/')) throw new PinError(`not a path in the drive: ${path}`);
    if (path === '/.stratus' || path.startsWith('/.stratus/')) throw new PinError(`${path}: the .stratus folder shows history, it cannot be pinned`);
    const node = await this.o.tree.resolve(path).catch(() => undefined);
    if (!node) throw new PinError(`${path}: no such file or folder on the drive`);
    return node;
  }

  private async save(): Promise<void> {
    await this.o.store.setMeta(META_KEY, JSON.stringify([...this.roots]));
  }

  /**
   * The blocks of every file at or under `node`: the ones kept already when their version did not
   * move, else the version's manifest (from the server only when `list`).
   */
  private async filesOf(node: LocalNode | undefined, opts: { list: boolean }): Promise<Map<number, Kept>> {
    const out = new Map<number, Kept>();
    if (!node) return out;
    const { files } = await subtreeFiles(this.o.tree, node.ino, opts);
    const parallel = this.o.parallel ?? 8;
    let next = 0;
    const worker = async () => {
      while (next < files.length) {
        const f = files[next++]!;
        const k = await this.keptOf(f, opts.list);
        if (k) out.set(f.ino, k);
      }
    };
    await Promise.all(Array.from({ length: Math.min(parallel, files.length) }, worker));
    return out;
  }

  private async keptOf(f: LocalNode, fromServer: boolean): Promise<Kept | undefined> {
    // Made here and not committed yet: its bytes are in its staging file; the commit brings a version.
    if (f.sid === null || f.headVersion === 0) return f.sid === null ? undefined : { sid: f.sid, version: 0, blocks: [] };
    const had = this.kept.get(f.ino);
    if (had && had.sid === f.sid && had.version === f.headVersion) return had;
    try {
      const m = fromServer ? await this.o.manifests.at(f.sid, f.headVersion) : await this.o.manifests.known(f.sid, f.headVersion);
      if (m) return { sid: f.sid, version: m.version, blocks: m.blocks };
    } catch (err) {
      this.o.log?.(`pins: cannot get the blocks of ${pathOf(this.o.tree, f.ino) ?? f.name}: ${(err as Error).message}`);
    }
    // Not known now: what was kept of an older version stays kept until the new one is.
    return had;
  }

  /**
   * Walks every pin again, keeps what is under them within the cache bound, pins the blocks now
   * kept and unpins the ones no longer kept; with `fetch`, fetches what is missing.
   */
  private async settle(opts: { list: boolean; fetch: boolean }): Promise<void> {
    // Roots removed (here or elsewhere) are pins no more.
    const gone = [...this.roots].filter((root) => !this.o.tree.get(root));
    for (const root of gone) this.roots.delete(root);
    if (gone.length) await this.save();
    const all = new Map<number, Kept>();
    for (const root of this.roots) for (const [ino, k] of await this.filesOf(this.o.tree.get(root), opts)) all.set(ino, k);
    // Within the bound: files in a stable order, each whole or not at all.
    const want = new Map<string, number>();
    let total = 0;
    let left = 0;
    this.kept.clear();
    for (const ino of [...all.keys()].sort((a, b) => a - b)) {
      const k = all.get(ino)!;
      let extra = 0;
      for (const b of k.blocks) if (!want.has(b.hash)) extra += b.size;
      if (total + extra > this.o.cache.maxBytes) {
        left++;
        continue;
      }
      for (const b of k.blocks) want.set(b.hash, b.size);
      total += extra;
      this.kept.set(ino, k);
    }
    if (left > 0 && !this.warnedOver) this.o.log?.(`pins: ${left} pinned file(s) are not kept offline: the pins would exceed the cache size of ${size(this.o.cache.maxBytes)}`);
    this.warnedOver = left > 0;
    for (const [hash, s] of want) {
      if (this.held.has(hash)) continue;
      this.o.cache.pin(hash);
      this.held.set(hash, s);
    }
    for (const hash of [...this.held.keys()]) {
      if (want.has(hash)) continue;
      this.o.cache.unpin(hash);
      this.held.delete(hash);
    }
    if (opts.fetch) {
      const missing = [...this.kept.values()].filter((k) => k.blocks.some((b) => !this.o.cache.has(b.hash)));
      if (missing.length) await this.fetch(missing, distinct(missing), undefined).catch((err: unknown) => this.o.log?.(`pins: ${(err as Error).message}`));
    }
  }

  /** Fetches the missing blocks of `files` (a few at once), reporting progress; returns the bytes fetched. */
  private async fetch(files: Kept[], blocks: Map<string, number>, progress: ((p: PinProgress) => void) | undefined): Promise<number> {
    const { cache } = this.o;
    const p: PinProgress = { files: 0, totalFiles: files.length, bytes: 0, totalBytes: sum(blocks) };
    for (const [hash, s] of blocks) if (cache.has(hash)) p.bytes += s;
    let lastReport = 0;
    const report = (force = false) => {
      if (!progress) return;
      const now = Date.now();
      if (!force && now - lastReport < PROGRESS_EVERY_MS) return;
      lastReport = now;
      progress({ ...p });
    };
    report(true);
    let fetched = 0;
    const loads = new Map<string, Promise<void>>();
    const slot = pLimit(this.o.parallel ?? 8);
    const load = (b: BlockRef): Promise<void> => {
      let l = loads.get(b.hash);
      if (!l) {
        l = cache.has(b.hash)
          ? Promise.resolve()
          : slot(async () => {
              await this.o.fetchBlock(b.hash, b.size);
              if (!cache.has(b.hash)) {
                const st = cache.stats();
                throw new PinError(`the cache is full: ${size(this.pinnedBytes)} pinned and ${size(st.reservedBytes)} held by files being saved, of ${size(cache.maxBytes)}`);
              }
              fetched += b.size;
              p.bytes += b.size;
              report();
            });
        loads.set(b.hash, l);
      }
      return l;
    };
    let failure: unknown;
    let next = 0;
    const worker = async () => {
      // Stopping the drive ends a fetch after the blocks in flight (the pin stays; the next start fetches the rest).
      while (next < files.length && failure === undefined && !this.closed) {
        const f = files[next++]!;
        try {
          await Promise.all(f.blocks.map(load));
          p.files++;
          report();
        } catch (err) {
          failure ??= err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.o.parallel ?? 8, files.length) }, worker));
    report(true);
    if (failure !== undefined) {
      if (failure instanceof PinError) throw failure;
      throw new PinError(`fetching pinned files failed after ${p.files} of ${p.totalFiles} file(s): ${(failure as Error).message} (the pin stays; what is missing is fetched later)`);
    }
    return fetched;
  }
}

/** Distinct blocks of `files` (hash → size), leaving out those in `except`. */
function distinct(files: Iterable<Kept>, except?: Map<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const k of files) for (const b of k.blocks) if (!except?.has(b.hash)) out.set(b.hash, b.size);
  return out;
}

function sum(blocks: Map<string, number>): number {
  let total = 0;
  for (const s of blocks.values()) total += s;
  return total;
}

/** A size as people read it, as the CLI prints sizes (1.5MB, powers of 1024). */
export function size(n: number): string {
  return bytes.format(n, { decimalPlaces: 1 }) ?? `${n}B`;
}
