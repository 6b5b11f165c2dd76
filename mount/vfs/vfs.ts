import { randomUUID } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { LRUCache } from 'lru-cache';
import type { BlockCache } from '../../cache/block-cache.js';
import { ApiError } from '../../protocol/errors.js';
import type { StratusClient } from '../../protocol/client.js';
import type { LocalNode, PendingCreate, StateStore } from '../state/store.js';
import { LINK_MODE, MAX_TARGET_BYTES, targetProblem } from '../../protocol/link-target.js';
import { nameProblem } from '../../protocol/names.js';
import { conflictedCopyName } from '../sync/conflict-name.js';
import type { CommitQueue } from '../sync/commit-queue.js';
import type { BlockSource } from './block-source.js';
import { FsError, isTransient } from './errors.js';
import { Extents } from './extents.js';
import { ManifestReader, PinnedManifest } from './manifest-reader.js';
import { LocalTimes } from './times.js';
import { checkFileSize, checkNameLength, checkNodeType, checkOwnerChange, lookupFailure } from './posix.js';
import { isLocalId, newLocalId, type Tree } from './tree.js';
import type { NodeInfo, NodeKind } from '../../protocol/types.js';

export interface Stat {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  blksize: number;
  blocks: number;
  mtime: number;
  atime: number;
  ctime: number;
}

export interface VfsOptions {
  tree: Tree;
  client: StratusClient;
  source: BlockSource;
  cache: BlockCache;
  queue: CommitQueue;
  stagingDir: string;
  uid?: number;
  gid?: number;
  /** Whether the server is reachable as far as the mount knows (creates go to the offline queue at once when not). */
  online?: () => boolean;
  /** Names this device in conflicted copies. */
  device?: string;
  /** Where manifests read are kept for offline restarts. */
  store?: StateStore;
  /** The largest file size (posix.ts fileSizeLimit of the server's config): past it, EFBIG. */
  maxFileSize?: number;
}

/** A staging file: bytes written on this mount that the server does not have yet. */
interface StagingFile {
  path: string;
  fh: FileHandle;
  /** Byte ranges written to it (its data; the rest are holes). */
  extents: Extents;
  /** Bytes of the cache bound held for it (they pass to the queue entry with the file). */
  reserved: number;
  /**
   * Handed to the commit queue as a snapshot (a close(2) queued it): never written again. Its
   * session reads it through `fh` until its next change, which goes to a copy.
   */
  queued: boolean;
  /** Calls using `fh` right now (reads, writes, copies, fsync): it is closed only after them. */
  busy: number;
  /** Used by no session or handle any more: `fh` is closed once `busy` is 0. */
  retired: boolean;
  closed: boolean;
}

/**
 * A file open for writing: one session per node from its first open for writing to the release
 * of the last, shared by all its handles (read-only handles opened meanwhile read it too). A
 * close(2) queues a snapshot of it (invariant 5) without ending it: its handles go on reading and
 * writing the live content, and the next close queues the newer content.
 */
interface Dirty {
  nodeId: string;
  /** The live content: every read and write of the session's handles goes to this file. */
  file: StagingFile;
  size: number;
  mtime: number;
  baseVersion: number;
  /** Opens for writing (handles, and opens joining right now). */
  writers: number;
  /** Handles reading or writing this session. */
  handles: Set<Handle>;
  /** Changes made (writes, truncates); `queuedGen` is what the last queued snapshot holds. */
  gen: number;
  queuedGen: number;
  /** Writes and truncates in progress: a snapshot waits for them (`idle` wakes it). */
  changing: number;
  idle: (() => void)[];
  /** A snapshot being queued: changes wait for it. */
  snapshotting?: Promise<void>;
  /** The first change after a snapshot copies the queued file into a new one: this copy. */
  copying?: Promise<void>;
  /** The last writer released it; its read-only handles may still read its file. */
  ended: boolean;
  unlinked: boolean;
  /** Where a file made offline goes if the tree has lost it meanwhile (its folder deleted elsewhere). */
  create?: PendingCreate;
}

interface Handle {
  nodeId: string;
  /** Opened for writing. */
  writable: boolean;
  /** The write session this handle writes and reads (from open to release), or reads (opened read-only meanwhile). */
  session?: Dirty;
  /** A FLUSH came (one of its descriptors was closed) and it has not changed the file since. */
  flushed: boolean;
  /** Opened by the mount itself (truncate by path), not by a descriptor: no close(2) will come. */
  internal?: boolean;
  reader?: ManifestReader;
  /** A read-only handle on queued (not yet committed) content: its own descriptor on the staging file. */
  file?: FileHandle;
}

const S_IFDIR = 0o040000;
const OFFLINE = Symbol('offline');
const O_ACCMODE = 3;
const ZEROS = Buffer.alloc(4 * 1024 * 1024);
/** Chunk size when copying queued content into a new staging file. */
const COPY_CHUNK = 1024 * 1024;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

/**
 * The file system the mount shows, in plain async methods over paths: the FUSE adapter only
 * translates callbacks. Metadata operations go to the server; file content is read through
 * pinned manifests and the block cache, written to staging files and committed on close through
 * the durable commit queue. Errors are FsError (errno names).
 */
export class Vfs {
  private readonly dirty = new Map<string, Dirty>();
  /** Staging sessions being set up (a copy or a download may take a while). */
  private readonly starting = new Map<string, Promise<Dirty>>();
  /** Data ranges of queued staging files this mount wrote (see copyStaging). */
  private readonly stagedExtents = new Map<string, Extents>();
  private readonly handles = new Map<number, Handle>();
  private nextFh = 1;
  private readonly manifests = new LRUCache<string, PinnedManifest>({ max: 512 });
  private readonly uid: number;
  private readonly gid: number;
  private readonly maxFileSize: number;
  /** atime, ctime and folders' entry-change mtimes, which the server does not keep (times.ts). */
  private readonly times = new LocalTimes();

  constructor(private readonly o: VfsOptions) {
    this.maxFileSize = o.maxFileSize ?? Number.MAX_SAFE_INTEGER;
    this.uid = o.uid ?? process.getuid?.() ?? 0;
    this.gid = o.gid ?? process.getgid?.() ?? 0;
    o.queue.on('removed', (size: number) => o.cache.release(size));
    o.queue.on('remapped', (localId: string, info: NodeInfo) => this.remapped(localId, info.id));
  }

  /** A file made offline got its server id: open sessions and descriptors follow it. */
  private remapped(localId: string, id: string): void {
    this.times.moved(localId, id);
    const d = this.dirty.get(localId);
    if (d) {
      this.dirty.delete(localId);
      d.nodeId = id;
      delete d.create;
      this.dirty.set(id, d);
    }
    const starting = this.starting.get(localId);
    if (starting) {
      this.starting.delete(localId);
      this.starting.set(id, starting);
    }
    for (const h of this.handles.values()) if (h.nodeId === localId) h.nodeId = id;
  }

  /**
   * Makes a node on the server, or — with the server unreachable, or inside a folder made offline —
   * only here, for the commit queue to create later. A name taken on the server by a node this
   * mount had not seen yet: ours is kept under a conflicted-copy name (both kept). A link has its
   * `target` and no mode of its own.
   */
  private async makeNode(parent: LocalNode, name: string, kind: NodeKind, mode: number, target?: string): Promise<LocalNode> {
    const mtime = Date.now();
    const fields = target === undefined ? { mode } : { target };
    if (!isLocalId(parent.id) && this.online) {
      for (let attempt = 0; attempt < 20; attempt++) {
        const tryName = attempt === 0 ? name : conflictedCopyName(name, this.o.device ?? 'this device', new Date(mtime), attempt - 1);
        try {
          const info = await this.o.client.create({ parent_id: parent.id, name: tryName, kind, mtime, ...fields });
          this.o.tree.applyInfo(info);
          if (kind === 'dir') this.o.tree.patch(info.id, { listed: true });
          return this.o.tree.get(info.id) ?? (await this.lookupId(info.id));
        } catch (err) {
          if (err instanceof ApiError && err.code === 'exists') {
            if (kind === 'dir') throw new FsError('EEXIST');
            continue;
          }
          if (!isTransient(err) || err instanceof ApiError) throw err;
          break; // unreachable: made offline below
        }
      }
    }
    const size = target === undefined ? 0 : Buffer.byteLength(target, 'utf8');
    const node: LocalNode = { id: newLocalId(), parentId: parent.id, name, kind, headVersion: 0, size, mtime, mode, listed: kind === 'dir', ...(target !== undefined && { target }) };
    this.o.tree.addLocal(node);
    // A file's creation is queued with its content, when it is closed.
    if (kind !== 'file') await this.o.queue.enqueueCreate(node.id, { parentId: parent.id, name, kind, mode, ...(target !== undefined && { target }) }, mtime);
    return node;
  }

  private async lookupId(id: string): Promise<LocalNode> {
    const n = this.o.tree.get(id);
    if (!n) throw new FsError('ENOENT');
    return n;
  }

  /** The node has content written here that the server does not have yet (open for writing or queued). */
  hasLocalContent(nodeId: string): boolean {
    return this.dirty.has(nodeId) || this.starting.has(nodeId) || this.o.queue.latest(nodeId) !== undefined;
  }

  /** Whether the server is reachable, as far as the mount knows. */
  private get online(): boolean {
    return this.o.online?.() ?? true;
  }

  get openHandles(): number {
    return this.handles.size;
  }

  // --- metadata ---------------------------------------------------------------------------------

  async getattr(path: string): Promise<Stat> {
    return this.stat(await this.lookup(path));
  }

  async readdir(path: string): Promise<{ names: string[]; stats: Stat[] }> {
    const dir = await this.lookup(path);
    if (dir.kind !== 'dir') throw new FsError('ENOTDIR');
    await this.o.tree.ensureListed(dir);
    const kids = this.o.tree.children(dir.id);
    return { names: kids.map((k) => k.name), stats: kids.map((k) => this.stat(k)) };
  }

  statfs(): { bsize: number; frsize: number; blocks: number; bfree: number; bavail: number; files: number; ffree: number; favail: number; namemax: number } {
    // A remote drive has no fixed size: report a large one so tools do not refuse to copy.
    const blocks = 2 ** 40 / 4096;
    return { bsize: 4096, frsize: 4096, blocks, bfree: blocks, bavail: blocks, files: 2 ** 32, ffree: 2 ** 32, favail: 2 ** 32, namemax: 255 };
  }

  async mkdir(path: string, mode: number): Promise<void> {
    const { parent, name } = await this.parentOf(path);
    if (this.o.tree.child(parent.id, name)) throw new FsError('EEXIST');
    await this.makeNode(parent, name, 'dir', mode & 0o7777);
    this.entriesChanged(parent.id);
  }

  /**
   * symlink(2): a link at `path` holding `target` exactly as written. The kernel follows links
   * (it asks readlink and walks the target itself); the drive and the server never do.
   */
  async symlink(target: string, path: string): Promise<void> {
    assertTarget(target);
    const { parent, name } = await this.parentOf(path);
    if (this.o.tree.child(parent.id, name)) throw new FsError('EEXIST');
    await this.makeNode(parent, name, 'link', LINK_MODE, target);
    this.entriesChanged(parent.id);
  }

  async readlink(path: string): Promise<string> {
    const node = await this.lookup(path);
    if (node.kind !== 'link' || node.target === undefined) throw new FsError('EINVAL');
    return node.target;
  }

  async rmdir(path: string): Promise<void> {
    await this.removeDir(path);
    await this.entriesChangedAt(parentPath(path));
  }

  private async removeDir(path: string): Promise<void> {
    const node = await this.lookup(path);
    if (node.kind !== 'dir') throw new FsError('ENOTDIR');
    if (node.parentId === null) throw new FsError('EBUSY');
    await this.o.tree.ensureListed(node);
    if (this.o.tree.children(node.id).length) throw new FsError('ENOTEMPTY');
    // A folder made offline is only in the queue: forgetting it there is removing it.
    if (isLocalId(node.id)) await this.o.queue.dropNode(node.id);
    else {
      try {
        // Only if still empty on the server: a file added elsewhere meanwhile is not deleted with it.
        const sent = await this.whenOnline(() => this.o.client.remove(node.id, { ifEmpty: true }));
        if (sent === OFFLINE) await this.o.queue.enqueueOp(node.id, { kind: 'delete', folder: true });
      } catch (err) {
        if (err instanceof ApiError && err.code === 'not_empty') this.o.tree.patch(node.id, { listed: false });
        throw err;
      }
    }
    this.o.tree.removeSubtree(node.id);
    this.times.forget(node.id);
  }

  async unlink(path: string): Promise<void> {
    await this.removeFile(path);
    await this.entriesChangedAt(parentPath(path));
  }

  private async removeFile(path: string): Promise<void> {
    const node = await this.lookup(path);
    if (node.kind === 'dir') throw new FsError('EISDIR');
    const d = this.dirty.get(node.id);
    if (d) d.unlinked = true;
    await this.o.queue.dropNode(node.id);
    if (!isLocalId(node.id)) {
      // Conditional on the version this mount has seen: an edit made elsewhere meanwhile survives the delete.
      let seen = this.o.tree.get(node.id)?.headVersion ?? node.headVersion;
      for (let attempt = 0; ; attempt++) {
        try {
          const sent = await this.whenOnline(() => this.o.client.remove(node.id, { ifVersion: seen }));
          if (sent === OFFLINE) await this.o.queue.enqueueOp(node.id, { kind: 'delete', ifVersion: seen });
          break;
        } catch (err) {
          if (err instanceof ApiError && err.code === 'stale_version') {
            const head = Number(err.extra.head_version);
            // The head is this mount's own last save (it landed while the delete was on its way): delete it.
            if (attempt === 0 && head === this.o.queue.ownVersion(node.id)) {
              seen = head;
              continue;
            }
            this.o.tree.applyInfo(await this.o.client.node(node.id));
            return;
          }
          if (!(err instanceof ApiError && err.code === 'not_found')) throw err;
          break;
        }
      }
    }
    this.o.tree.removeSubtree(node.id);
  }

  /**
   * Runs a call that needs the server, or answers OFFLINE when the server is known to be away or
   * the call could not reach it (the caller then queues the operation instead).
   */
  private async whenOnline<T>(call: () => Promise<T>): Promise<T | typeof OFFLINE> {
    if (!this.online) return OFFLINE;
    try {
      return await call();
    } catch (err) {
      if (err instanceof ApiError || err instanceof FsError || !isTransient(err)) throw err;
      return OFFLINE;
    }
  }

  async rename(from: string, to: string): Promise<void> {
    const src = await this.lookup(from);
    // Onto itself: nothing changes, not even a time (move() answers the errors of any other case).
    if ((await this.o.tree.resolve(to).catch(() => undefined))?.id === src.id) return;
    await this.move(from, to);
    // The moved node's status changed, and so did the entries of both folders.
    const moved = await this.o.tree.resolve(to).catch(() => undefined);
    if (moved) this.times.changed(moved.id, this.ownMtime(moved));
    await this.entriesChangedAt(parentPath(from));
    await this.entriesChangedAt(parentPath(to));
  }

  private async move(from: string, to: string): Promise<void> {
    let src = await this.lookup(from);
    if (src.parentId === null) throw new FsError('EBUSY');
    let { parent, name } = await this.parentOf(to);
    let dst = this.o.tree.child(parent.id, name);
    if (dst?.id === src.id) return;
    if (dst) {
      if (dst.kind === 'dir' && src.kind !== 'dir') throw new FsError('EISDIR');
      if (dst.kind !== 'dir' && src.kind === 'dir') throw new FsError('ENOTDIR');
      if (dst.kind === 'dir') {
        await this.o.tree.ensureListed(dst);
        if (this.o.tree.children(dst.id).length) throw new FsError('ENOTEMPTY');
      }
    }
    if (dst && isLocalId(dst.id)) {
      // Replacing a node made offline: the server never knew it, forgetting it here is replacing it.
      await this.forgetLocal(dst);
      dst = undefined;
    }
    if (isLocalId(src.id) && !dst) {
      // Moving a node made offline: it will be created under its new name and folder.
      this.o.tree.patch(src.id, { parentId: parent.id, name });
      await this.o.queue.renameLocal(src.id, parent.id, name);
      return;
    }
    if (isLocalId(src.id) && src.kind === 'file' && dst?.kind === 'file' && !this.o.queue.sending(src.id)) {
      // A file made offline (an editor's temp file) renamed over one the server has: its content
      // becomes the destination's next version, as the server's replace would make it — offline too.
      await this.replaceWithLocal(src, dst);
      return;
    }
    if (!isLocalId(src.id) && !dst && (isLocalId(parent.id) || !this.online || this.o.queue.hasOp(src.id))) {
      // Offline, or into a folder made offline: the move is queued behind what it depends on.
      await this.queueMove(src, parent.id, name);
      return;
    }
    if (isLocalId(src.id) || isLocalId(parent.id)) {
      // The server must know both ends first: wait for the queue to create what was made offline.
      if (!this.online) throw new FsError('EIO', 'the server is unreachable');
      const open = this.dirty.get(src.id);
      if (open) await this.snapshot(open);
      await Promise.all([this.o.queue.waitFor(src.id, 30_000), this.o.queue.waitFor(parent.id, 30_000)]).catch(() => {
        throw new FsError('EIO', 'the server did not take the offline changes in time');
      });
      src = await this.lookupId(this.o.queue.mapped(src.id));
      parent = await this.lookupId(this.o.queue.mapped(parent.id));
      if (isLocalId(src.id) || isLocalId(parent.id)) throw new FsError('EIO');
      dst = this.o.tree.child(parent.id, name);
    }
    // The server moves what it has: content of the source must be there first, also what was
    // written to a source still open for writing (`os.replace(tmp, f)` before `tmp` is closed).
    if (src.kind === 'file') {
      const open = this.dirty.get(src.id);
      if (open && dst) await this.snapshot(open);
      await this.o.queue.waitFor(src.id);
    }
    if (dst && dst.kind === 'file') {
      await this.o.queue.dropNode(dst.id);
      // An upload of the old content already on the wire lands before the replace, not after it.
      await this.o.queue.waitFor(dst.id);
    }
    const moving = src;
    const sent = await this.whenOnline(() => this.o.client.update(moving.id, { parent_id: parent.id, name, ...(dst && { replace: true }) }));
    if (sent === OFFLINE) {
      // Replacing a file the server has needs the server; a plain move waits in the queue.
      if (dst) throw new FsError('EIO', 'the server is unreachable');
      await this.queueMove(src, parent.id, name);
      return;
    }
    const info = sent;
    if (dst?.kind === 'file') {
      // Writers of the replaced file write an unlinked file, whether its node took the source's
      // content (file over file) or went to the trash (a link took its place).
      const replaced = this.dirty.get(dst.id);
      if (replaced) {
        replaced.unlinked = true;
        this.dirty.delete(dst.id);
      }
    }
    if (info.id !== src.id) {
      // File over file: the destination node took the source's content as a new version (history
      // kept); open descriptors of the source carry on as the destination node (their next write
      // starts from the version just made).
      this.o.tree.removeSubtree(src.id);
      for (const h of this.handles.values()) if (h.nodeId === src.id) h.nodeId = info.id;
      const d = this.dirty.get(src.id);
      if (d) {
        this.dirty.delete(src.id);
        d.nodeId = info.id;
        d.baseVersion = info.head_version;
        this.dirty.set(info.id, d);
      }
    }
    if (src.kind === 'dir') {
      const listed = src.listed;
      this.o.tree.applyInfo(info);
      if (listed) this.o.tree.patch(info.id, { listed: true });
    } else this.o.tree.applyInfo(info);
  }

  async chmod(path: string, mode: number): Promise<void> {
    const node = await this.lookup(path);
    // As on Linux's own file systems: a link's mode is always 0777 (chmod follows links; only fchmodat's AT_SYMLINK_NOFOLLOW gets here).
    if (node.kind === 'link') throw new FsError('EOPNOTSUPP');
    if (isLocalId(node.id)) this.o.tree.patch(node.id, { mode: mode & 0o7777 });
    else {
      const info = await this.o.client.update(node.id, { mode: mode & 0o7777 });
      this.o.tree.patch(node.id, { mode: info.mode });
    }
    this.times.changed(node.id, this.ownMtime(node));
  }

  /** Only to the mounting user and group: a single-owner file system (posix.ts). */
  async chown(path: string, uid: number, gid: number): Promise<void> {
    const node = await this.lookup(path);
    checkOwnerChange(uid, gid, { uid: this.uid, gid: this.gid });
    this.times.changed(node.id, this.ownMtime(node));
  }

  /** A regular file (as create, closed at once); FIFOs, sockets and devices are EPERM (posix.ts). */
  async mknod(path: string, mode: number): Promise<void> {
    const { parent, name } = await this.parentOf(path);
    if (this.o.tree.child(parent.id, name)) throw new FsError('EEXIST');
    checkNodeType(mode);
    await this.release(await this.create(path, mode));
  }

  /**
   * The mount itself is about to set a node's mtime to `mtime` through the kernel (to make it take
   * fresh attributes after a remote change): that utimens changes nothing, also not the mtime of
   * a file a user opened for writing meanwhile.
   */
  readonly expectTouch = {
    begin: (path: string, id: string, mtime: number): void => void this.touches.set(path, { id, mtime }),
    end: (path: string): void => void this.touches.delete(path),
  };
  /** The mount's own touches in flight, by mount path. */
  private readonly touches = new Map<string, { id: string; mtime: number }>();

  /**
   * Times in ms since the epoch, null = leave unchanged (UTIME_OMIT). The mtime goes to the
   * server (with the content it dates); the atime is kept by the drive (times.ts); ctime is now.
   */
  async utimens(path: string, atime: number | null, mtime: number | null): Promise<void> {
    const node = await this.lookup(path);
    if (mtime !== null) {
      const ms = Math.round(mtime);
      // Ours — also when another node took the path meanwhile (a rename here): it must not get that mtime.
      const touch = this.touches.get(path);
      if (touch && (touch.id !== node.id || Math.abs(touch.mtime - ms) <= 1)) return;
      await this.setMtime(node, ms);
    }
    const now = this.o.tree.get(node.id) ?? node;
    this.times.set(node.id, atime === null ? null : Math.round(atime), mtime !== null, this.ownMtime(now));
  }

  private async setMtime(node: LocalNode, ms: number): Promise<void> {
    const d = this.dirty.get(node.id);
    if (d) {
      await d.snapshotting?.catch(() => undefined);
      d.mtime = ms;
      // Changes not queued yet carry it; else what the file holds is queued (or committed): set it there.
      if (d.gen !== d.queuedGen) return;
    }
    if (this.o.queue.latest(node.id)) {
      // Queued content carries the new mtime; if its upload already started, set it again after.
      await this.o.queue.setMtime(node.id, ms);
      this.o.tree.patch(node.id, { mtime: ms });
      return;
    }
    // Nothing to change (also the mount's own utimes that makes the kernel take fresh attributes).
    if (ms === node.mtime) return;
    if (isLocalId(node.id)) {
      this.o.tree.patch(node.id, { mtime: ms });
      return;
    }
    const info = await this.o.client.update(node.id, { mtime: ms });
    this.o.tree.patch(node.id, { mtime: info.mtime });
  }

  // --- files ------------------------------------------------------------------------------------

  async create(path: string, mode: number): Promise<number> {
    const { parent, name } = await this.parentOf(path);
    const existing = this.o.tree.child(parent.id, name);
    // The kernel thought the name free (a stale negative entry): open what is there, as O_CREAT does.
    if (existing) return this.open(path, fsc.O_RDWR);
    const node = await this.makeNode(parent, name, 'file', mode & 0o7777);
    this.entriesChanged(parent.id);
    const dirty = await this.startDirty(node, true);
    if (isLocalId(node.id)) dirty.create = { parentId: node.parentId!, name: node.name, kind: 'file', mode: node.mode };
    return this.addSessionHandle(dirty, true);
  }

  async open(path: string, flags: number): Promise<number> {
    const node = await this.lookup(path);
    if (node.kind === 'dir') throw new FsError('EISDIR');
    // The kernel follows links before it opens; a link itself opens only as O_NOFOLLOW would: ELOOP.
    if (node.kind === 'link') throw new FsError('ELOOP');
    const access = flags & O_ACCMODE;
    if (access !== fsc.O_RDONLY) return this.addSessionHandle(await this.startDirty(node, (flags & fsc.O_TRUNC) !== 0), true);
    // Being written here: the reader sees the writes as they happen, as on a local disk.
    const d = this.dirty.get(node.id);
    if (d) return this.addSessionHandle(d, false);
    const staging = this.o.queue.latest(node.id)?.staging;
    if (staging) {
      try {
        return this.addHandle({ nodeId: node.id, writable: false, flushed: false, file: await open(staging, 'r') });
      } catch (err) {
        // Committed and removed in between: the manifest below is the content now.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    const current = this.o.tree.get(node.id) ?? node;
    return this.addHandle({ nodeId: node.id, writable: false, flushed: false, reader: new ManifestReader(await this.manifest(current), this.o.source) });
  }

  async read(fh: number, buf: Buffer, length: number, position: number): Promise<number> {
    const h = this.handle(fh);
    if (h.session) {
      // The session's live file, whatever a close queued meanwhile; it stays open until this read is done.
      const f = h.session.file;
      return this.using(f, () => readFully(f.fh, buf, length, position));
    }
    if (h.reader) return h.reader.read(buf, length, position);
    if (h.file) return readFully(h.file, buf, length, position);
    throw new FsError('EBADF');
  }

  async write(fh: number, buf: Buffer, length: number, position: number): Promise<number> {
    const h = this.handle(fh);
    const d = h.session;
    if (!d || !h.writable) throw new FsError('EBADF');
    // Nothing to write changes nothing (no size, no mtime, no new version), as write(2) of 0 bytes.
    if (length === 0) return 0;
    // As a disk does at its largest file: what fits is written, a write starting past it is EFBIG.
    if (position + length > this.maxFileSize) {
      checkFileSize(position + 1, this.maxFileSize);
      length = this.maxFileSize - position;
    }
    h.flushed = false;
    return this.change(d, async (f) => {
      // Room for the bytes written, not for a hole before them (a sparse file costs what is written).
      await this.reserveUpTo(f, Math.min(f.reserved + length, Math.max(d.size, position + length)));
      d.gen++;
      await writeFully(f.fh, buf.subarray(0, length), position);
      f.extents.add(position, position + length);
      d.size = Math.max(d.size, position + length);
      d.mtime = Date.now();
      return length;
    });
  }

  async truncate(path: string, size: number): Promise<void> {
    const node = await this.lookup(path);
    if (node.kind === 'dir') throw new FsError('EISDIR');
    checkFileSize(size, this.maxFileSize);
    const fh = await this.open(path, size === 0 ? fsc.O_WRONLY | fsc.O_TRUNC : fsc.O_WRONLY);
    this.handle(fh).internal = true;
    try {
      await this.ftruncate(fh, size);
    } finally {
      await this.release(fh);
    }
  }

  async ftruncate(fh: number, size: number): Promise<void> {
    const h = this.handle(fh);
    const d = h.session;
    if (!d || !h.writable) throw new FsError('EBADF');
    checkFileSize(size, this.maxFileSize);
    h.flushed = false;
    await this.change(d, (f) => this.cut(d, f, size));
  }

  /** Cuts (or grows with a hole) the session's file to `size`. */
  private async cut(d: Dirty, f: StagingFile, size: number): Promise<void> {
    d.gen++;
    // Growing leaves a hole, which takes no disk: nothing to reserve. Shrinking gives back what is cut off.
    await f.fh.truncate(size);
    f.extents.truncate(size);
    if (size < f.reserved) {
      this.o.cache.release(f.reserved - size);
      f.reserved = size;
    }
    d.size = size;
    d.mtime = Date.now();
  }

  /** `fsync`: the staging file and the queue reach the disk (survive a power cut, not only a crash). */
  async fsync(fh: number): Promise<void> {
    const h = this.handle(fh);
    if (h.session) {
      const f = h.session.file;
      await this.using(f, () => f.fh.sync());
    } else {
      const queued = this.o.queue.latest(h.nodeId)?.staging;
      if (queued) {
        const f = await open(queued, 'r').catch(() => undefined);
        await f?.sync();
        await f?.close();
      }
    }
    await this.o.queue.sync();
  }

  /**
   * `close(2)` of a descriptor (also of a duplicate: the descriptor may stay open). The kernel
   * answers close after FLUSH, not after RELEASE, so what was written is queued here (invariant 5:
   * on disk before close returns) once every handle open for writing has been closed since its
   * last change — also when the kernel sends the RELEASE of an earlier one after this FLUSH. The
   * session goes on: its handles read and write the live content, the next close queues that.
   */
  async flush(fh: number): Promise<void> {
    const h = this.handles.get(fh);
    const d = h?.session;
    if (!h || !d || !h.writable) return;
    h.flushed = true;
    for (const other of d.handles) if (other.writable && !other.flushed && !other.internal) return;
    // Committed once the file is released: a dup'd descriptor may still write (`cmd > file`).
    this.o.queue.hold(d.nodeId);
    await this.snapshot(d);
  }

  async release(fh: number): Promise<void> {
    const h = this.handles.get(fh);
    if (!h) return;
    this.handles.delete(fh);
    if (h.file) await h.file.close().catch(() => undefined);
    const d = h.session;
    try {
      if (d) {
        d.handles.delete(h);
        if (h.writable) await this.leave(d);
      }
    } finally {
      if (d) this.retireEnded(d);
      if (h.writable && ![...this.handles.values()].some((x) => x.writable && x.nodeId === h.nodeId)) this.o.queue.unhold(h.nodeId);
    }
  }

  /** A writer leaves the session; the last one queues what is not queued yet and ends it. */
  private async leave(d: Dirty): Promise<void> {
    if (--d.writers > 0) return;
    try {
      await this.snapshot(d);
    } finally {
      // Unless a new open joined while it was being queued: then the session goes on.
      if (d.writers === 0 && !d.ended) {
        d.ended = true;
        if (this.dirty.get(d.nodeId) === d) this.dirty.delete(d.nodeId);
        const f = d.file;
        // Nothing of it queued (unchanged, unlinked, or the queue refused it): it goes.
        if (!f.queued) {
          this.o.cache.release(f.reserved);
          f.reserved = 0;
          await rm(f.path, { force: true });
        }
      }
    }
  }

  /** An ended session read by no handle any more lets its file go. */
  private retireEnded(d: Dirty): void {
    if (d.ended && d.handles.size === 0) this.retire(d.file);
  }

  /**
   * Queues the session's content as it is now (a durable commit, invariant 5) without ending it.
   * Waits for writes and truncates in progress, and holds new ones until it is queued; those then
   * go to a copy (`change`), so the queued bytes never change. Nothing to do when nothing changed
   * since the last snapshot. Snapshots of one session run one after another.
   */
  private snapshot(d: Dirty): Promise<void> {
    const p = (d.snapshotting ?? Promise.resolve()).catch(() => undefined).then(() => this.queueSnapshot(d));
    d.snapshotting = p;
    const done = () => {
      if (d.snapshotting === p) d.snapshotting = undefined;
    };
    p.then(done, done);
    return p;
  }

  private async queueSnapshot(d: Dirty): Promise<void> {
    while (d.changing > 0) await new Promise<void>((wake) => d.idle.push(wake));
    if (d.gen === d.queuedGen || d.unlinked) return;
    const f = d.file;
    const gen = d.gen;
    const node = this.o.tree.get(d.nodeId);
    // Kept for a copy of this queued content (the next writer's); entries that left the queue are dropped.
    const queued = new Set(this.o.queue.list().map((e) => e.staging));
    for (const path of this.stagedExtents.keys()) if (!queued.has(path)) this.stagedExtents.delete(path);
    this.stagedExtents.set(f.path, f.extents);
    const create: PendingCreate | undefined = !isLocalId(d.nodeId)
      ? undefined
      : node
        ? { parentId: node.parentId!, name: node.name, kind: 'file', mode: node.mode }
        : d.create;
    // From here on the file is the queue's: the next change copies it.
    f.queued = true;
    try {
      // Invariant 5: queued on disk before close returns. The reservation passes to the queue entry.
      await this.o.queue.enqueue({ nodeId: d.nodeId, baseVersion: d.baseVersion, staging: f.path, size: d.size, mtime: d.mtime, reserved: f.reserved, ...(create && { create }) });
    } catch (err) {
      f.queued = false;
      throw err;
    }
    f.reserved = 0;
    d.queuedGen = gen;
    this.o.tree.patch(d.nodeId, { size: d.size, mtime: d.mtime });
  }

  /**
   * Runs a write or truncate of the session: after a snapshot being queued, on a file of the
   * session's own (the first change after a snapshot copies the queued file into a new one).
   */
  private async change<T>(d: Dirty, fn: (f: StagingFile) => Promise<T>): Promise<T> {
    for (;;) {
      if (d.snapshotting) await d.snapshotting.catch(() => undefined);
      else if (d.file.queued) {
        d.copying ??= this.unqueue(d).finally(() => (d.copying = undefined));
        await d.copying;
      } else break;
    }
    const f = d.file;
    d.changing++;
    try {
      return await this.using(f, () => fn(f));
    } finally {
      if (--d.changing === 0) for (const wake of d.idle.splice(0)) wake();
    }
  }

  /** The session goes on in a copy of its queued file (which stays as the queue has it). */
  private async unqueue(d: Dirty): Promise<void> {
    const from = d.file;
    const to = await this.newStagingFile();
    try {
      await this.using(from, () => this.copyInto(to, from.fh, from.extents.list, d.size));
    } catch (err) {
      await this.dropFile(to);
      throw err;
    }
    d.file = to;
    this.retire(from);
  }

  /** Runs `fn` on a staging file's descriptor, which stays open meanwhile. */
  private async using<T>(f: StagingFile, fn: () => Promise<T>): Promise<T> {
    f.busy++;
    try {
      return await fn();
    } finally {
      f.busy--;
      this.settle(f);
    }
  }

  /** The file is no longer read or written through the session: its descriptor closes once unused. */
  private retire(f: StagingFile): void {
    f.retired = true;
    this.settle(f);
  }

  private settle(f: StagingFile): void {
    if (!f.retired || f.busy > 0 || f.closed) return;
    f.closed = true;
    f.fh.close().catch(() => undefined);
  }

  private async newStagingFile(): Promise<StagingFile> {
    const path = join(this.o.stagingDir, randomUUID());
    return { path, fh: await open(path, 'w+'), extents: new Extents(), reserved: 0, queued: false, busy: 0, retired: false, closed: false };
  }

  /** A staging file that will never hold anything: closed, removed, its room given back. */
  private async dropFile(f: StagingFile): Promise<void> {
    f.closed = true;
    await f.fh.close().catch(() => undefined);
    await rm(f.path, { force: true });
    this.o.cache.release(f.reserved);
    f.reserved = 0;
  }

  private addSessionHandle(d: Dirty, writable: boolean): number {
    const h: Handle = { nodeId: d.nodeId, writable, flushed: false, session: d };
    d.handles.add(h);
    return this.addHandle(h);
  }

  /** A node's own mtime: its open writers', else its queued save's, else the server's. */
  private ownMtime(node: LocalNode): number {
    return this.dirty.get(node.id)?.mtime ?? this.o.queue.latest(node.id)?.mtime ?? node.mtime;
  }

  /** Entries of the folder changed here now: its mtime and ctime move (times.ts). */
  private entriesChanged(dirId: string): void {
    const dir = this.o.tree.get(dirId);
    if (dir) this.times.entriesChanged(dir.id, this.ownMtime(dir));
  }

  /** The same for the folder at a path; a folder gone meanwhile (or not resolvable offline) is skipped: the change is done. */
  private async entriesChangedAt(dirPath: string): Promise<void> {
    const dir = await this.o.tree.resolve(dirPath).catch(() => undefined);
    if (dir) this.entriesChanged(dir.id);
  }

  /** Sizes and times as the mount shows them: open writers first, then queued content, then the server's. */
  private stat(node: LocalNode): Stat {
    let size = node.size;
    let mtime = node.mtime;
    const d = this.dirty.get(node.id);
    const q = d ? undefined : this.o.queue.latest(node.id);
    if (d) ({ size, mtime } = d);
    else if (q) ({ size, mtime } = q);
    const times = this.times.shown(node.id, mtime);
    const isDir = node.kind === 'dir';
    return {
      mode: (isDir ? S_IFDIR : node.kind === 'link' ? S_IFLNK : S_IFREG) | (node.mode & 0o7777),
      uid: this.uid,
      gid: this.gid,
      size: isDir ? 4096 : size,
      nlink: isDir ? this.o.tree.dirLinks(node) : 1,
      blksize: 4096,
      blocks: Math.ceil((isDir ? 4096 : size) / 512),
      ...times,
    };
  }

  /** Opens (or joins) the staging session of a file; two opens at once share one session. */
  private async startDirty(node: LocalNode, truncate: boolean): Promise<Dirty> {
    const starting = this.starting.get(node.id);
    if (starting) await starting.catch(() => undefined);
    if (this.dirty.has(node.id)) return this.joinDirty(node, truncate);
    const p = this.newDirty(node, truncate);
    this.starting.set(node.id, p);
    try {
      return await p;
    } finally {
      if (this.starting.get(node.id) === p) this.starting.delete(node.id);
    }
  }

  private async joinDirty(node: LocalNode, truncate: boolean): Promise<Dirty> {
    const existing = this.dirty.get(node.id);
    if (!existing) return this.newDirty(node, truncate);
    existing.writers++;
    if (truncate) {
      try {
        await this.change(existing, (f) => this.cut(existing, f, 0));
      } catch (err) {
        await this.leave(existing);
        this.retireEnded(existing);
        throw err;
      }
    }
    return existing;
  }

  private async newDirty(node: LocalNode, truncate: boolean): Promise<Dirty> {
    const queued = this.o.queue.latest(node.id);
    let size = 0;
    let baseVersion = node.headVersion;
    if (queued) baseVersion = queued.baseVersion;
    if (!truncate && queued) size = queued.size;
    // The queued file stays on disk until copied, even if its commit lands meanwhile (else: ENOENT, i.e. EIO).
    const copyFrom = !truncate && queued ? queued.staging : undefined;
    if (copyFrom) this.o.queue.useStaging(copyFrom);
    let file: StagingFile;
    try {
      file = await this.newStagingFile();
    } catch (err) {
      if (copyFrom) await this.o.queue.releaseStaging(copyFrom);
      throw err;
    }
    const d: Dirty = {
      nodeId: node.id,
      file,
      size,
      mtime: queued?.mtime ?? node.mtime,
      baseVersion,
      writers: 1,
      handles: new Set(),
      // A truncating open is a change (an empty file commits); an open that only copies is not.
      gen: truncate ? 1 : 0,
      queuedGen: 0,
      changing: 0,
      idle: [],
      ended: false,
      unlinked: false,
    };
    try {
      if (copyFrom) {
        const src = await open(copyFrom, 'r');
        try {
          // Where this mount wrote the queued file, only its data ranges are read (holes are not even read).
          await this.copyInto(file, src, this.stagedExtents.get(copyFrom)?.list, queued!.size);
        } finally {
          await src.close();
        }
        d.size = queued!.size;
      } else if (!truncate && node.headVersion > 0 && node.size > 0) await this.materialize(d, await this.manifest(node));
    } catch (err) {
      await this.dropFile(file);
      throw err;
    } finally {
      if (copyFrom) await this.o.queue.releaseStaging(copyFrom);
    }
    if (truncate) d.mtime = Date.now();
    this.dirty.set(node.id, d);
    return d;
  }

  /** Copies a version into a staging file (a writer that does not truncate edits the whole file). */
  private async materialize(d: Dirty, m: PinnedManifest): Promise<void> {
    const f = d.file;
    // The staging file starts sparse: blocks of zeros (holes of sparse files) need no write.
    await f.fh.truncate(m.size);
    const zeroBlocks = new Set<string>();
    let next = 0;
    let failed = false;
    const worker = async () => {
      while (next < m.blocks.length && !failed) {
        const i = next++;
        const b = m.blocks[i]!;
        if (zeroBlocks.has(b.hash)) continue;
        const bytes = await this.o.source.get(b.hash, b.size);
        if (bytes.length <= ZEROS.length && bytes.equals(ZEROS.subarray(0, bytes.length))) {
          zeroBlocks.add(b.hash);
          continue;
        }
        // Only written bytes hold room in the cache bound (a 5 GiB sparse file is not 5 GiB here).
        await this.reserveMore(f, bytes.length);
        await writeFully(f.fh, bytes, m.offsets[i]!);
        f.extents.add(m.offsets[i]!, m.offsets[i]! + bytes.length);
      }
    };
    // Every worker has stopped before a failure propagates (the caller then closes the file and gives back the room).
    const results = await Promise.allSettled(
      Array.from({ length: Math.min(4, m.blocks.length) }, () =>
        worker().catch((err: unknown) => {
          failed = true;
          throw err;
        }),
      ),
    );
    for (const r of results) if (r.status === 'rejected') throw r.reason;
    d.size = m.size;
  }

  /**
   * Copies staged (not yet committed) content into a new staging file: the first `size` bytes of
   * `src`, only its data `ranges` when known. Not copyFile: on most file systems that writes every
   * hole of a sparse file out as zeros (a 5 GiB `truncate -s` takes 5 GiB and half a minute).
   * Chunks that read as zeros are left as holes and reserve nothing.
   */
  private async copyInto(to: StagingFile, src: FileHandle, ranges: readonly (readonly [number, number])[] | undefined, size: number): Promise<void> {
    await to.fh.truncate(size);
    const buf = Buffer.allocUnsafe(COPY_CHUNK);
    for (const [start, end] of ranges ?? [[0, size] as const]) {
      for (let pos = start; pos < Math.min(end, size); ) {
        const { bytesRead } = await src.read(buf, 0, Math.min(buf.length, Math.min(end, size) - pos), pos);
        if (bytesRead === 0) break;
        const chunk = buf.subarray(0, bytesRead);
        if (!chunk.equals(ZEROS.subarray(0, bytesRead))) {
          await this.reserveMore(to, bytesRead);
          await writeFully(to.fh, chunk, pos);
          to.extents.add(pos, pos + bytesRead);
        }
        pos += bytesRead;
      }
    }
  }

  private async reserveUpTo(f: StagingFile, size: number): Promise<void> {
    if (size > f.reserved) await this.reserveMore(f, size - f.reserved);
  }

  /** Adds `bytes` to the room a staging file holds in the cache bound (additive: safe for concurrent calls). */
  private async reserveMore(f: StagingFile, bytes: number): Promise<void> {
    try {
      await this.o.cache.reserve(bytes);
    } catch {
      throw new FsError('ENOSPC', 'the cache cannot hold more unsaved data');
    }
    f.reserved += bytes;
  }

  private async manifest(node: LocalNode): Promise<PinnedManifest> {
    if (node.headVersion === 0) return new PinnedManifest(0, []);
    const key = `${node.id}@${node.headVersion}`;
    let m = this.manifests.get(key);
    if (m) return m;
    // Kept on disk too: a mount restarted while the server is away still opens the files it cached.
    const saved = await this.o.store?.getManifest(node.id, node.headVersion).catch(() => undefined);
    if (saved) m = new PinnedManifest(node.headVersion, saved);
    else {
      const res = await this.o.client.manifest(node.id, node.headVersion);
      m = new PinnedManifest(res.version, res.blocks);
      this.o.store?.putManifest(node.id, res.version, res.blocks).catch(() => undefined);
    }
    this.manifests.set(key, m);
    return m;
  }

  private addHandle(h: Handle): number {
    const fh = this.nextFh++;
    if (this.nextFh > 0x7fffffff) this.nextFh = 1;
    this.handles.set(fh, h);
    return fh;
  }

  private handle(fh: number): Handle {
    const h = this.handles.get(fh);
    if (!h) throw new FsError('EBADF');
    return h;
  }

  /** `rename(localFile, serverFile)`: the destination keeps its id and history and takes the source's bytes. */
  private async replaceWithLocal(src: LocalNode, dst: LocalNode): Promise<void> {
    const open = this.dirty.get(src.id);
    if (open) await this.snapshot(open);
    // What was queued for the destination is replaced; an upload of it on the wire lands first.
    await this.o.queue.dropNode(dst.id);
    await this.o.queue.waitFor(dst.id);
    const replaced = this.dirty.get(dst.id);
    if (replaced) {
      replaced.unlinked = true;
      this.dirty.delete(dst.id);
    }
    const base = this.o.tree.get(dst.id)?.headVersion ?? dst.headVersion;
    await this.o.queue.retarget(src.id, dst.id, base);
    for (const h of this.handles.values()) if (h.nodeId === src.id) h.nodeId = dst.id;
    // Descriptors still open on the source go on writing the destination (its next save).
    if (open && this.dirty.get(src.id) === open) {
      this.dirty.delete(src.id);
      open.nodeId = dst.id;
      open.baseVersion = base;
      delete open.create;
      this.dirty.set(dst.id, open);
    }
    const latest = this.o.queue.latest(dst.id);
    this.o.tree.removeSubtree(src.id);
    if (latest) this.o.tree.patch(dst.id, { size: latest.size, mtime: latest.mtime });
  }

  private async queueMove(node: LocalNode, parentId: string, name: string): Promise<void> {
    await this.o.queue.enqueueOp(node.id, { kind: 'move', parentId, name });
    this.o.tree.patch(node.id, { parentId, name });
  }

  /** Drops a node made offline (never on the server) with what is queued and open for it. */
  private async forgetLocal(node: LocalNode): Promise<void> {
    const d = this.dirty.get(node.id);
    if (d) d.unlinked = true;
    await this.o.queue.dropNode(node.id);
    this.o.tree.removeSubtree(node.id);
  }

  private async lookup(path: string): Promise<LocalNode> {
    const node = await this.o.tree.resolve(path);
    if (!node) throw await lookupFailure(this.o.tree, path);
    return node;
  }

  /** The folder a new name goes in, and the name; the folder is resolved first, as Linux does. */
  private async parentOf(path: string): Promise<{ parent: LocalNode; name: string }> {
    const i = path.lastIndexOf('/');
    const name = path.slice(i + 1);
    if (!name) throw new FsError('EINVAL');
    const parent = await this.lookup(path.slice(0, i) || '/');
    if (parent.kind !== 'dir') throw new FsError('ENOTDIR');
    checkNameLength(name);
    // The binding hands names over as UTF-8 text and turns bytes that are not UTF-8 into U+FFFD:
    // storing such a name would silently rename what the program made (as for link targets).
    if (name.includes('\uFFFD')) throw new FsError('EILSEQ', 'a name must be valid UTF-8');
    // Refused here, as the server would: a name made offline must be one the server will take later.
    const problem = nameProblem(name);
    if (problem) throw new FsError('EINVAL', problem);
    await this.o.tree.ensureListed(parent);
    return { parent, name };
  }
}

/**
 * A target symlink(2) may store: what the server takes (protocol/link-target.ts). A U+FFFD is
 * refused too: the binding hands over a target's bytes as UTF-8 text and turns bytes that are
 * not UTF-8 into U+FFFD, so storing it could change what was written.
 */
function assertTarget(target: string): void {
  if (Buffer.byteLength(target, 'utf8') > MAX_TARGET_BYTES) throw new FsError('ENAMETOOLONG');
  if (target.includes('\uFFFD')) throw new FsError('EILSEQ', 'a link target must be valid UTF-8');
  const problem = targetProblem(target);
  if (problem) throw new FsError('EINVAL', problem);
}

async function writeFully(fh: FileHandle, bytes: Buffer, position: number): Promise<void> {
  for (let done = 0; done < bytes.length; ) done += (await fh.write(bytes, done, bytes.length - done, position + done)).bytesWritten;
}

/** Reads up to `length` bytes at `position` (fewer only at the end of the file). */
async function readFully(fh: FileHandle, buf: Buffer, length: number, position: number): Promise<number> {
  let total = 0;
  while (total < length) {
    const { bytesRead } = await fh.read(buf, total, length - total, position + total);
    if (bytesRead === 0) break;
    total += bytesRead;
  }
  return total;
}

/** The folder part of a mount path ("/a/b" → "/a", "/a" → "/"). */
function parentPath(path: string): string {
  return path.slice(0, path.lastIndexOf('/')) || '/';
}
