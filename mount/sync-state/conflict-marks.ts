import type { CommitResult } from '../sync/sender.js';

/**
 * Files whose last save here was kept as a conflicted copy (invariant 6: the server had moved on,
 * or the file was gone), so their sync state says `conflict` until a later save of theirs commits
 * cleanly. In memory: after a restart the copies themselves still say `conflict` by their names.
 */
export class ConflictMarks {
  private readonly marked = new Set<number>();

  /** Takes a commit the sender reports (its `committed` event). */
  readonly committed = (r: CommitResult): void => {
    if (r.conflictedCopy !== undefined) this.marked.add(r.ino);
    else this.marked.delete(r.ino);
  };

  has(ino: number): boolean {
    return this.marked.has(ino);
  }
}
