import type { LocalNode } from '../model/local-node.js';
import type { Tree } from '../node/tree.js';
import type { OpLog } from '../oplog/op-log.js';

/** How long deletes inside a share wait for more of the same burst (and for the entry's own removal). */
export const SHARE_DELETE_GRACE_MS = 3_000;

/**
 * `rm -r` of a share's entry must remove it for this user only, never the owner's files (DESIGN
 * §3). rm unlinks everything inside before it removes the folder, and each of those is an editor's
 * legitimate delete on its own. So deletes inside a share wait a moment before they are sent, as
 * long as more come (one burst); when the entry itself is removed meanwhile, they are dropped: the
 * share leaves this user's drive and nothing in it is deleted. A delete with no such end goes once
 * the burst is quiet (or at once when the drive drains to stop).
 */
export class ShareDeletes {
  /** Per share entry (its ino): the nodes under it deleted here and not sent yet. */
  private readonly pending = new Map<number, Set<number>>();

  constructor(private readonly o: { log: OpLog; tree: Tree; graceMs?: number }) {}

  /** The share entry `node` lies under (not the entry itself), if any. */
  entryOf(node: LocalNode): number | undefined {
    for (let p = node.parent === null ? undefined : this.o.tree.node(node.parent); p; p = p.parent === null ? undefined : this.o.tree.node(p.parent)) {
      if (p.entry) return p.ino;
    }
    return undefined;
  }

  /** When a delete of `node` (under share entry `entry`) may be sent; every earlier one of the burst waits as long. */
  notBefore(entry: number, node: LocalNode): number {
    const at = Date.now() + (this.o.graceMs ?? SHARE_DELETE_GRACE_MS);
    const inos = this.pending.get(entry) ?? new Set<number>();
    this.pending.set(entry, inos);
    for (const ino of inos) {
      for (const e of this.o.log.entriesOf(ino)) if (e.op.kind === 'delete' && !e.send.started) e.send.retryAt = at;
    }
    inos.add(node.ino);
    return at;
  }

  /** The entry is being removed: the deletes under it not sent yet are dropped (nothing of the owner's is deleted). */
  async leaving(entry: number): Promise<void> {
    const inos = this.pending.get(entry);
    this.pending.delete(entry);
    for (const ino of inos ?? []) {
      for (const e of [...this.o.log.entriesOf(ino)]) if (e.op.kind === 'delete' && !e.send.started) await this.o.log.done(e);
    }
  }
}
