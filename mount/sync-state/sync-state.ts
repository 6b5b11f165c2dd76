import type { BlockCache } from '../../cache/block-cache.js';
import { isConflictedCopyName } from '../model/conflict-name.js';
import type { LocalNode } from '../model/local-node.js';
import type { Tree } from '../node/tree.js';
import type { OpLog } from '../oplog/op-log.js';
import type { PinManager } from '../pins/pin-manager.js';
import { pathOf, subtreeFiles } from '../pins/subtree.js';
import type { Manifests } from '../vfs/manifests.js';
import type { ConflictMarks } from './conflict-marks.js';

/**
 * A node's sync state, as `user.stratus.state` and `stratus status PATH` show it. One word, the
 * first that holds, in this order (what needs the user's attention first, then what the drive
 * still owes the server, then where the bytes are):
 *
 *   conflict     a conflicted copy (by its name), or a file whose last save here was kept as one
 *   uploading    the sender is sending something of it right now
 *   pending      something of it waits in the operation log, or it is open with unsaved writes
 *   pinned       synced, and under a pin: every block of a file is in the cache, kept there
 *                (a folder: pinned, whether or not the fetch is complete)
 *   cached       a synced file whose every block is in the cache
 *   online-only  a synced file with blocks only the server has
 *   synced       a synced folder or link (no content to cache)
 *
 * A pinned file still being fetched reads `cached`/`online-only` until its last block arrives.
 */
export type SyncState = 'conflict' | 'uploading' | 'pending' | 'pinned' | 'cached' | 'online-only' | 'synced';

export const SYNC_STATES: readonly SyncState[] = ['conflict', 'uploading', 'pending', 'pinned', 'cached', 'online-only', 'synced'];

export interface SyncStatesOptions {
  tree: Tree;
  log: OpLog;
  cache: BlockCache;
  manifests: Manifests;
  pins: PinManager;
  conflicts: ConflictMarks;
  /** The file is open for writing with changes not queued yet (Vfs.hasLocalContent). */
  localContent: (ino: number) => boolean;
}

/** One file or link: its state and what it takes. */
export interface FileStatus {
  path: string;
  kind: 'file' | 'link';
  state: SyncState;
  size: number;
  /** The server version it shows (0: none yet). */
  version: number;
  /** Bytes of that version's blocks in the cache. */
  cachedBytes: number;
  pinned: boolean;
}

/** A folder: its own state and a summary of the files under it (as far as listed here). */
export interface FolderStatus {
  path: string;
  kind: 'dir';
  state: SyncState;
  pinned: boolean;
  files: number;
  /** Files per state (only states that occur). */
  states: Partial<Record<SyncState, number>>;
  /** Bytes of saves queued for files under it. */
  pendingBytes: number;
  size: number;
  cachedBytes: number;
  /** Folders under it never listed here: what is in them is not counted. */
  unlisted: number;
}

export type NodeStatus = FileStatus | FolderStatus;

/** How many files a folder summary looks at between two turns of the event loop. */
const YIELD_EVERY = 500;

/** Sync states of nodes (see SyncState), from what the mount holds: never asks the server. */
export class SyncStates {
  constructor(private readonly o: SyncStatesOptions) {}

  async stateOf(node: LocalNode): Promise<SyncState> {
    const owed = this.owed(node);
    if (owed) return owed;
    if (node.kind === 'dir') return this.o.pins.isPinned(node.ino) ? 'pinned' : 'synced';
    if (node.kind !== 'file') return 'synced';
    if (this.o.pins.isKept(node)) return 'pinned';
    return (await this.cachedBytes(node)) === node.size ? 'cached' : 'online-only';
  }

  async statusOf(node: LocalNode): Promise<NodeStatus> {
    const path = pathOf(this.o.tree, node.ino) ?? `/${node.name}`;
    if (node.kind !== 'dir') {
      return {
        path,
        kind: node.kind === 'link' ? 'link' : 'file',
        state: await this.stateOf(node),
        size: node.size,
        version: node.headVersion,
        cachedBytes: node.kind === 'file' ? await this.cachedBytes(node) : 0,
        pinned: this.o.pins.isPinned(node.ino),
      };
    }
    const { files, unlisted } = await subtreeFiles(this.o.tree, node.ino, { list: false });
    const out: FolderStatus = { path, kind: 'dir', state: await this.stateOf(node), pinned: this.o.pins.isPinned(node.ino), files: files.length, states: {}, pendingBytes: 0, size: 0, cachedBytes: 0, unlisted };
    for (const [i, f] of files.entries()) {
      if (i > 0 && i % YIELD_EVERY === 0) await new Promise<void>((r) => setImmediate(r));
      const state = await this.stateOf(f);
      out.states[state] = (out.states[state] ?? 0) + 1;
      out.pendingBytes += this.o.log.latestContent(f.ino)?.size ?? 0;
      out.size += f.size;
      out.cachedBytes += await this.cachedBytes(f);
    }
    return out;
  }

  /** conflict, uploading or pending, when one holds (see SyncState). */
  private owed(node: LocalNode): SyncState | undefined {
    if (node.kind === 'file' && (this.o.conflicts.has(node.ino) || isConflictedCopyName(node.name))) return 'conflict';
    const entries = this.o.log.entriesOf(node.ino);
    if (entries.some((e) => e.send.inFlight)) return 'uploading';
    if (entries.length > 0 || this.o.localContent(node.ino)) return 'pending';
    return undefined;
  }

  /** Bytes of the file's current version in the cache (0 when this mount never read its manifest). */
  private async cachedBytes(node: LocalNode): Promise<number> {
    if (node.kind !== 'file' || node.size === 0) return 0;
    if (node.sid === null || node.headVersion === 0) return 0;
    const m = await this.o.manifests.known(node.sid, node.headVersion);
    if (!m) return 0;
    let n = 0;
    for (const b of m.blocks) if (this.o.cache.has(b.hash)) n += b.size;
    return n;
  }
}
