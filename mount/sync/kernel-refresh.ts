import { utimes } from 'node:fs/promises';
import type { LocalNode } from '../model/local-node.js';
import type { Tree } from '../node/tree.js';

/** Sets a path's atime and mtime (seconds); the default goes through the kernel to the mount itself. */
export type Touch = (path: string, mtimeSeconds: number) => Promise<void>;

export interface KernelRefresherOptions {
  /** Absolute path of the mount; node paths are joined to it. */
  mountpoint: string;
  tree: Pick<Tree, 'get' | 'rootIno'>;
  /** Nodes to leave alone: local content not yet on the server (being written, or queued). */
  skip?: (ino: number) => boolean;
  /** At most this many touches in flight. */
  concurrency?: number;
  touch?: Touch;
  /** Told around each touch, so the mount's utimens can tell it from a user's (see Vfs.expectTouch). */
  expect?: { begin(path: string, ino: number, mtime: number): void; end(path: string): void };
}

const defaultTouch: Touch = (path, s) => utimes(path, s, s);

/**
 * Makes the kernel forget stale attributes and pages of files changed remotely. fuse-native has no
 * invalidation call (see notes/fuse-native.md), so the mount sets each such file's mtime to the
 * value it already has, through its own mountpoint: the kernel takes size and mtime from the
 * setattr reply, and auto_cache drops the cached pages at the next open. The mount's utimens sees
 * an unchanged mtime and does nothing else.
 *
 * Never awaited by a FUSE callback (the touch re-enters the mount); errors are ignored (the file
 * may be gone by then, and attr_timeout bounds the staleness anyway). A node asked for several
 * times while waiting is touched once.
 */
export class KernelRefresher {
  private readonly pending = new Set<number>();
  private active = 0;
  private closed = false;
  private readonly idleWaiters: (() => void)[] = [];
  private readonly touch: Touch;
  private readonly concurrency: number;

  constructor(private readonly o: KernelRefresherOptions) {
    this.touch = o.touch ?? defaultTouch;
    this.concurrency = Math.max(1, o.concurrency ?? 8);
  }

  /** Queues the kernel refresh of these nodes (files still in the tree; others are ignored). */
  refresh(inos: Iterable<number>): void {
    if (this.closed) return;
    for (const ino of inos) this.pending.add(ino);
    this.pump();
  }

  /** Resolves when nothing is queued or in flight. */
  idle(): Promise<void> {
    if (this.active === 0 && this.pending.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Drops what is queued and waits for the touches in flight (call before unmounting). */
  async close(): Promise<void> {
    this.closed = true;
    this.pending.clear();
    await this.idle();
  }

  private pump(): void {
    while (this.active < this.concurrency && this.pending.size > 0) {
      const id = this.pending.values().next().value as number;
      this.pending.delete(id);
      // Path and mtime are taken now, not when asked: the node may have moved or changed since.
      const node = this.o.tree.get(id);
      if (!node || node.kind !== 'file' || this.o.skip?.(id)) continue;
      const path = this.pathOf(node);
      if (path === undefined) continue;
      this.active++;
      Promise.resolve()
        .then(() => {
          // The mount's utimens must know this touch is ours (not a user's `touch` to apply).
          this.o.expect?.begin(path, id, node.mtime);
          // +0.5 ms: the time crosses as float seconds, whole µs, then ms rounded down by the binding.
          return this.touch(this.o.mountpoint + path, (node.mtime + 0.5) / 1000);
        })
        .catch(() => undefined)
        .finally(() => {
          this.o.expect?.end(path);
          this.active--;
          this.pump();
        });
    }
    if (this.active === 0 && this.pending.size === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** "/a/b" of a node, by its folders up to the root; undefined when a folder on the way is unknown. */
  pathOf(node: LocalNode): string | undefined {
    const parts: string[] = [];
    let n: LocalNode | undefined = node;
    for (let depth = 0; n && n.ino !== this.o.tree.rootIno; depth++) {
      if (n.parent === null || depth > 4096) return undefined;
      parts.push(n.name);
      n = this.o.tree.get(n.parent);
    }
    return n ? `/${parts.reverse().join('/')}` : undefined;
  }
}
