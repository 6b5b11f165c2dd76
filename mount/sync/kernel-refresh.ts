import { rmdir, unlink, utimes } from 'node:fs/promises';
import type { LocalNode } from '../model/local-node.js';
import type { Tree } from '../node/tree.js';

/** Sets a path's atime and mtime (seconds); the default goes through the kernel to the mount itself. */
export type Touch = (path: string, mtimeSeconds: number) => Promise<void>;

export interface KernelRefresherOptions {
  /** Absolute path of the mount; node paths are joined to it. */
  mountpoint: string;
  tree: Pick<Tree, 'get' | 'rootIno' | 'pathOf'>;
  /** Nodes to leave alone: local content not yet on the server (being written, or queued). */
  skip?: (ino: number) => boolean;
  /** At most this many touches in flight. */
  concurrency?: number;
  touch?: Touch;
  /** Told around each touch, so the mount's utimens can tell it from a user's (see Vfs.expectTouch). */
  expect?: { begin(path: string, ino: number, mtime: number): void; end(path: string): void };
  /** Removes a name through the kernel (unlink, or rmdir for a folder); the default goes through the mount itself. */
  drop?: (path: string, kind: LocalNode['kind']) => Promise<void>;
  /** Told around each drop, so the mount's unlink, rmdir and rename can tell it from a user's (see Vfs.expectForget). */
  expectForget?: { begin(path: string): void; end(path: string): void };
}

const defaultDrop = (path: string, kind: LocalNode['kind']): Promise<void> => (kind === 'dir' ? rmdir(path) : unlink(path));

const defaultTouch: Touch = (path, s) => utimes(path, s, s);

/**
 * Makes the kernel forget what it caches of nodes changed not through it: names (`forget`) and
 * attributes and pages of files (`refresh`).
 *
 * Names: a node renamed, moved or deleted elsewhere (or renamed by the sender: a conflicted copy)
 * leaves a name the kernel may hold for entry_timeout. The mount unlinks (rmdir for a folder: the
 * kind the kernel knows) that name through its own mountpoint, and its Vfs, told to expect it,
 * answers success and changes nothing: the kernel drops the entry and looks the name up afresh —
 * also when another node holds it by then (of another kind, even: tar's placeholder file replaced
 * by a symbolic link).
 *
 * Attributes and pages: stale ones of files changed remotely. fuse-native has no
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
  /** Files passed over while they had local content: refreshed once that is settled. */
  private readonly skipped = new Set<number>();
  private readonly forgets = new Map<string, LocalNode['kind']>();
  private readonly drop: (path: string, kind: LocalNode['kind']) => Promise<void>;
  private active = 0;
  private closed = false;
  private readonly idleWaiters: (() => void)[] = [];
  private readonly touch: Touch;
  private readonly concurrency: number;

  constructor(private readonly o: KernelRefresherOptions) {
    this.touch = o.touch ?? defaultTouch;
    this.drop = o.drop ?? defaultDrop;
    this.concurrency = Math.max(1, o.concurrency ?? 8);
  }

  /** Queues the kernel refresh of these nodes (files still in the tree; others are ignored). */
  refresh(inos: Iterable<number>): void {
    if (this.closed) return;
    for (const ino of inos) this.pending.add(ino);
    this.pump();
  }

  /** Nothing of the node waits to be sent any more: a refresh passed over meanwhile happens now. */
  settled(ino: number): void {
    if (this.skipped.delete(ino)) this.refresh([ino]);
  }

  /** Queues the kernel forgetting a name (a mount path) that a node of this kind left. */
  forget(path: string, kind: LocalNode['kind']): void {
    if (this.closed) return;
    this.forgets.set(path, kind);
    this.pump();
  }

  /** Resolves when nothing is queued or in flight. */
  idle(): Promise<void> {
    if (this.active === 0 && this.pending.size === 0 && this.forgets.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Drops what is queued and waits for the touches in flight (call before unmounting). */
  async close(): Promise<void> {
    this.closed = true;
    this.pending.clear();
    this.forgets.clear();
    await this.idle();
  }

  private pump(): void {
    // Names first: a touch of a file's new path may need the kernel to have forgotten an old one.
    while (this.active < this.concurrency && this.forgets.size > 0) {
      const [path, kind] = this.forgets.entries().next().value as [string, LocalNode['kind']];
      this.forgets.delete(path);
      this.active++;
      Promise.resolve()
        .then(() => {
          this.o.expectForget?.begin(path);
          return this.drop(this.o.mountpoint + path, kind);
        })
        .catch(() => undefined)
        .finally(() => {
          this.o.expectForget?.end(path);
          this.active--;
          this.pump();
        });
    }
    while (this.active < this.concurrency && this.pending.size > 0) {
      const id = this.pending.values().next().value as number;
      this.pending.delete(id);
      // Path and mtime are taken now, not when asked: the node may have moved or changed since.
      const node = this.o.tree.get(id);
      if (!node || node.kind !== 'file') continue;
      if (this.o.skip?.(id)) {
        this.skipped.add(id);
        continue;
      }
      const path = this.o.tree.pathOf(node);
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
    if (this.active === 0 && this.pending.size === 0 && this.forgets.size === 0) for (const w of this.idleWaiters.splice(0)) w();
  }
}
