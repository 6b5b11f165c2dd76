import { LRUCache } from 'lru-cache';

/** What the drive keeps of one node's times beyond its mtime. */
interface Kept {
  /** Set by utimens (touch -a, cp -p, tar, rsync): reads do not move it (noatime). */
  atime?: number;
  /** The last change of the node's status (chmod, chown, rename, utimens, an entry of a folder). */
  ctime?: number;
  /** The node's own mtime when `ctime` was taken: a later mtime (a write, a remote edit) is a change too. */
  ctimeOver?: number;
  /** A folder: when an entry was last added, removed or renamed in it here. */
  entries?: number;
  /** The folder's own mtime then: once that changes (utimens here or elsewhere), it wins. */
  entriesOver?: number;
}

export interface Times {
  atime: number;
  mtime: number;
  ctime: number;
}

/** How many nodes' times are kept (the least recently used beyond it fall back to their mtime). */
const MAX_KEPT = 100_000;

/**
 * The times POSIX asks for that the server does not keep — a file's atime, every node's ctime, a
 * folder's mtime moving when entries are added, removed or renamed in it — kept by the drive in
 * memory for as long as it runs (see README, "Times"). Only the mtime of files, and of folders as
 * utimens sets it, is the server's and every device's; the rest is this drive's view, and after a
 * restart every time starts again from the mtime.
 *
 * atime follows noatime: it is what utimens last set (until then the mtime); reading never moves
 * it (as on a drive mounted noatime, and without a round trip per read).
 */
export class LocalTimes {
  private readonly kept = new LRUCache<number, Kept>({ max: MAX_KEPT });

  constructor(private readonly now: () => number = Date.now) {}

  private entry(id: number): Kept {
    let k = this.kept.get(id);
    if (!k) this.kept.set(id, (k = {}));
    return k;
  }

  /** The times to show for a node whose own mtime (its session's, its queued save's or the server's) is `own`. */
  shown(id: number, own: number): Times {
    const k = this.kept.get(id);
    if (!k) return { atime: own, mtime: own, ctime: own };
    const mtime = k.entries !== undefined && k.entriesOver === own ? k.entries : own;
    // A later own mtime (a write, a remote save) is a later change; an mtime set into the future by utimens is not.
    const ctime = k.ctime === undefined ? mtime : k.ctimeOver === own ? k.ctime : Math.max(k.ctime, own);
    return { atime: k.atime ?? mtime, mtime, ctime };
  }

  /** The node's status changed now (chmod, chown, rename); `own` is its own mtime. */
  changed(id: number, own: number): void {
    const k = this.entry(id);
    k.ctime = this.now();
    k.ctimeOver = own;
  }

  /** An entry was added to, removed from or renamed in the folder now; `own` is the folder's own mtime. */
  entriesChanged(dirId: number, own: number): void {
    const k = this.entry(dirId);
    const now = this.now();
    k.entries = now;
    k.entriesOver = own;
    k.ctime = now;
    k.ctimeOver = own;
  }

  /**
   * utimens set the atime (null: left alone) and maybe the mtime, which is now the node's own
   * mtime `own` (a folder's earlier entry changes no longer show over it); ctime is now.
   */
  set(id: number, atime: number | null, mtimeSet: boolean, own: number): void {
    const k = this.entry(id);
    if (atime !== null) k.atime = atime;
    if (mtimeSet) {
      delete k.entries;
      delete k.entriesOver;
    }
    k.ctime = this.now();
    k.ctimeOver = own;
  }

  forget(id: number): void {
    this.kept.delete(id);
  }
}
