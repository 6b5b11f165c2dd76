import type { FileHandle } from 'node:fs/promises';
import { FsError } from '../model/errors.js';
import type { ManifestReader } from './manifest-reader.js';
import type { Stat } from './stat.js';
import type { WriteSession } from './write-sessions.js';

/** An open file: a node (by inode number) and how it is read or written. */
export interface Handle {
  ino: number;
  /** Opened for writing. */
  writable: boolean;
  /** The write session this handle writes and reads (from open to release), or reads (opened read-only meanwhile). */
  session?: WriteSession;
  /** A FLUSH came (one of its descriptors was closed) and it has not changed the file since. */
  flushed: boolean;
  /** Opened by the mount itself (truncate by path), not by a descriptor: no close(2) will come. */
  internal?: boolean;
  /** A read-only handle on a committed version (or on queued content over one). */
  reader?: Pick<ManifestReader, 'read'>;
  /** A read-only handle on queued (not yet committed) content: its own descriptor on the staging file. */
  file?: FileHandle;
  /** A file of the virtual tree (`.stratus/`): its attributes, which never change while it is open. */
  stat?: Stat;
}

/** The table of open handles, by the number FUSE hands back on every call. */
export class Handles {
  private readonly open = new Map<number, Handle>();
  /** Open handles per node. */
  private readonly perNode = new Map<number, number>();
  private next = 1;

  add(h: Handle): number {
    const fh = this.next++;
    if (this.next > 0x7fffffff) this.next = 1;
    this.open.set(fh, h);
    this.perNode.set(h.ino, (this.perNode.get(h.ino) ?? 0) + 1);
    return fh;
  }

  /** Whether any handle is open on the node (an unlinked file stays known while one is: fstat answers it). */
  holds(ino: number): boolean {
    return this.perNode.has(ino);
  }

  /** The handle, or EBADF. */
  get(fh: number): Handle {
    const h = this.open.get(fh);
    if (!h) throw new FsError('EBADF');
    return h;
  }

  find(fh: number): Handle | undefined {
    return this.open.get(fh);
  }

  delete(fh: number): void {
    const h = this.open.get(fh);
    if (!h) return;
    this.open.delete(fh);
    const n = (this.perNode.get(h.ino) ?? 1) - 1;
    if (n > 0) this.perNode.set(h.ino, n);
    else this.perNode.delete(h.ino);
  }

  /** Whether a handle open for writing on the node is left. */
  writerOf(ino: number): boolean {
    for (const h of this.open.values()) if (h.writable && h.ino === ino) return true;
    return false;
  }

  get size(): number {
    return this.open.size;
  }
}
