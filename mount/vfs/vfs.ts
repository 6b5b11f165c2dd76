import { constants as fsc } from 'node:fs';
import { open } from 'node:fs/promises';
import type { BlockCache } from '../../cache/block-cache.js';
import type { StratusClient } from '../../protocol/client.js';
import { LINK_MODE, MAX_TARGET_BYTES, targetProblem } from '../../protocol/link-target.js';
import { nameProblem } from '../../protocol/names.js';
import type { NodeKind } from '../../protocol/types.js';
import type { LocalNode } from '../model/local-node.js';
import type { DeleteOp, MoveOp } from '../model/ops.js';
import type { Tree } from '../node/tree.js';
import type { OpLog } from '../oplog/op-log.js';
import type { StateStore } from '../state/store.js';
import type { BlockSource } from '../blocks/block-source.js';
import { FsError } from '../model/errors.js';
import { HistorySource } from '../history/history-source.js';
import { assertMayDetach, assertWritable, shownMode } from '../model/share-access.js';
import { Handles } from './handles.js';
import { ShareDeletes } from './share-deletes.js';
import { LayeredReader } from './layered-reader.js';
import { ManifestReader } from './manifest-reader.js';
import { Manifests } from './manifests.js';
import { checkFileSize, checkNameLength, checkNodeType, checkOwnerChange, lookupFailure } from './posix.js';
import { readFully } from '../blocks/file-io.js';
import { StagingFiles } from './staging-file.js';
import type { Stat } from './stat.js';
import { VirtualTree, VIRTUAL_NAME, isVirtualPath, readOnly } from './virtual-tree.js';
import { LocalTimes } from './times.js';
import { WriteSessions, type WriteSession } from './write-sessions.js';
import { isDriveXattr, XATTR_PREFIX, type Xattrs } from './xattrs.js';

export type { Stat } from './stat.js';

export interface VfsOptions {
  tree: Tree;
  log: OpLog;
  client: StratusClient;
  source: BlockSource;
  cache: BlockCache;
  store: StateStore;
  stagingDir: string;
  uid?: number;
  gid?: number;
  /** The largest file size (posix.ts fileSizeLimit of the server's config): past it, EFBIG. */
  maxFileSize?: number;
  /** Manifests shared with the rest of the mount (pins, sync states); default: the Vfs's own. */
  manifests?: Manifests;
  /** The drive's read-only `user.stratus.*` attributes (xattrs.ts); without, those names are ENODATA. */
  xattrs?: Xattrs;
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const O_ACCMODE = 3;
/** The names libfuse gives files unlinked while open. */
const HIDDEN = /^\.fuse_hidden[0-9a-f]+$/;

/**
 * The file system the mount shows, in plain async methods over paths: the FUSE adapter only
 * translates callbacks. Every change of names, places and attributes applies to the local tree
 * and is logged durably in one local transaction, then returns (DESIGN §6: local-first, online
 * and offline alike); the sender sends the log. File content is read through pinned manifests
 * and the block cache, written to staging files and logged at close. Only what was never fetched
 * (a folder's listing, a manifest, a block) waits for the server. Errors are FsError (errno names).
 */
export class Vfs {
  private readonly handles = new Handles();
  private readonly shareDeletes: ShareDeletes;
  private readonly staging: StagingFiles;
  private readonly sessions: WriteSessions;
  private readonly manifests: Manifests;
  private readonly uid: number;
  private readonly gid: number;
  private readonly maxFileSize: number;
  /** Files unlinked while open, by the `.fuse_hiddenNNN` path libfuse gave them (see hide). */
  private readonly hidden = new Map<string, LocalNode>();
  /** The write sessions of hidden files still open (by inode number). */
  private readonly hiddenSessions = new Map<number, WriteSession>();
  /** atime, ctime and folders' entry-change mtimes, which the server does not keep (times.ts). */
  private readonly times = new LocalTimes();
  /** `.stratus/`: versions and past trees, read-only (virtual-tree.ts). */
  private readonly virtual: VirtualTree;

  constructor(private readonly o: VfsOptions) {
    this.maxFileSize = o.maxFileSize ?? Number.MAX_SAFE_INTEGER;
    this.uid = o.uid ?? process.getuid?.() ?? 0;
    this.gid = o.gid ?? process.getgid?.() ?? 0;
    this.staging = new StagingFiles(o.stagingDir, o.cache);
    this.manifests = o.manifests ?? new Manifests(o.client, o.store);
    this.virtual = new VirtualTree({ tree: o.tree, history: new HistorySource(o.client), manifests: this.manifests, source: o.source, uid: this.uid, gid: this.gid });
    this.sessions = new WriteSessions({ staging: this.staging, log: o.log, tree: o.tree, manifests: this.manifests, source: o.source });
    this.shareDeletes = new ShareDeletes({ log: o.log, tree: o.tree });
    // A node removed here stays known while something has it open (its writes go on; fstat answers it).
    o.tree.inUse = (ino) => this.sessions.has(ino) || this.handles.holds(ino);
    o.log.on('released', (bytes: number) => o.cache.release(bytes));
  }

  /** The node has content written here that the server does not have yet (open for writing or queued). */
  hasLocalContent(ino: number): boolean {
    return this.sessions.hasLocalContent(ino);
  }

  get openHandles(): number {
    return this.handles.size;
  }

  // --- metadata ---------------------------------------------------------------------------------

  async getattr(path: string): Promise<Stat> {
    if (isVirtualPath(path)) return this.virtual.getattr(path);
    const hidden = this.hidden.get(path);
    if (hidden) return this.stat(this.o.tree.node(hidden.ino) ?? hidden, this.hiddenSessions.get(hidden.ino));
    return this.stat(await this.lookup(path));
  }

  /** fstat(2): the node of an open handle, as its writers see it (also once unlinked). */
  async fgetattr(fh: number): Promise<Stat> {
    const h = this.handles.get(fh);
    if (h.stat) return h.stat;
    const node = this.o.tree.node(h.ino) ?? [...this.hidden.values()].find((n) => n.ino === h.ino);
    if (!node) throw new FsError('ENOENT');
    return this.stat(node, h.session);
  }

  async readdir(path: string): Promise<{ names: string[]; stats: Stat[] }> {
    if (isVirtualPath(path)) return this.virtual.readdir(path);
    const dir = await this.lookup(path);
    if (dir.kind !== 'dir') throw new FsError('ENOTDIR');
    await this.o.tree.ensureListed(dir);
    // The root never lists the virtual tree (so find and rsync never walk it), nor a real node its name hides.
    const kids = this.o.tree.children(dir.ino).filter((k) => dir.parent !== null || k.name !== VIRTUAL_NAME);
    return { names: kids.map((k) => k.name), stats: kids.map((k) => this.stat(k)) };
  }

  statfs(): { bsize: number; frsize: number; blocks: number; bfree: number; bavail: number; files: number; ffree: number; favail: number; namemax: number } {
    // A remote drive has no fixed size: report a large one so tools do not refuse to copy.
    const blocks = 2 ** 40 / 4096;
    return { bsize: 4096, frsize: 4096, blocks, bfree: blocks, bavail: blocks, files: 2 ** 32, ffree: 2 ** 32, favail: 2 ** 32, namemax: 255 };
  }

  async mkdir(path: string, mode: number): Promise<void> {
    this.refuseVirtual(path);
    const { parent, name } = await this.freeName(path);
    await this.makeNode(parent, name, 'dir', mode & 0o7777);
  }

  /**
   * symlink(2): a link at `path` holding `target` exactly as written. The kernel follows links
   * (it asks readlink and walks the target itself); the drive and the server never do.
   */
  async symlink(target: string, path: string): Promise<void> {
    this.refuseVirtual(path);
    assertTarget(target);
    const { parent, name } = await this.freeName(path);
    await this.makeNode(parent, name, 'link', LINK_MODE, target);
  }

  async readlink(path: string): Promise<string> {
    if (isVirtualPath(path)) return this.virtual.readlink(path);
    const node = await this.lookup(path);
    if (node.kind !== 'link' || node.target === undefined) throw new FsError('EINVAL');
    return node.target;
  }

  async rmdir(path: string): Promise<void> {
    if (this.forgotten(path)) return;
    this.refuseVirtual(path);
    const node = await this.lookup(path);
    if (node.kind !== 'dir') throw new FsError('ENOTDIR');
    if (node.parent === null) throw new FsError('EBUSY');
    assertMayDetach(node, this.o.tree.get(node.parent));
    // A share's entry goes for this user only, whatever it holds: nothing of the owner's is deleted
    // (also not what `rm -r` unlinked inside it just before).
    if (node.entry) {
      await this.shareDeletes.leaving(node.ino);
      return this.remove(node, { kind: 'delete', ino: node.ino, folder: true });
    }
    await this.o.tree.ensureListed(node);
    if (this.o.tree.children(node.ino).length) throw new FsError('ENOTEMPTY');
    // Only if still empty on the server: a file added elsewhere meanwhile is not deleted with it.
    await this.remove(node, { kind: 'delete', ino: node.ino, folder: true });
  }

  async unlink(path: string): Promise<void> {
    if (this.forgotten(path)) return;
    this.refuseVirtual(path);
    const hidden = this.hidden.get(path);
    if (hidden) {
      this.hidden.delete(path);
      this.hiddenSessions.delete(hidden.ino);
      return;
    }
    const node = await this.lookup(path);
    if (node.kind === 'dir') throw new FsError('EISDIR');
    assertMayDetach(node, node.parent === null ? undefined : this.o.tree.get(node.parent));
    // Conditional on the version this mount has seen: an edit made elsewhere meanwhile survives the delete.
    await this.remove(node, { kind: 'delete', ino: node.ino, ifVersion: node.headVersion });
  }

  /** Removes a node here and logs its delete (nothing at all when the server never heard of it). */
  private async remove(node: LocalNode, op: { kind: 'delete'; ino: number; ifVersion?: number; folder?: boolean }): Promise<void> {
    this.sessions.unlink(node.ino);
    const gone = () => this.o.tree.byKernel(() => this.o.tree.removeSubtree(node.ino));
    const forget = this.o.log.forgettable(node.ino);
    // Inside a share: held for the rest of the burst (see share-deletes.ts).
    const entry = this.shareDeletes.entryOf(node);
    if (!forget) await this.o.log.append(op, gone, 0, entry === undefined ? 0 : this.shareDeletes.notBefore(entry, node));
    // It had replaced a node the server has (rename over it, then removed): that node is deleted,
    // in the transaction that forgets this one (a crash leaves both or neither).
    else if (forget.replaced !== undefined) await this.o.log.append(this.deleteOf(forget.replaced), gone, 0, 0, forget);
    else await this.o.log.forgetIfUnsent(node.ino, gone);
    // Its queued content is moot only now that the delete is durable: a crash before leaves the file with its content.
    await this.o.log.dropContent(node.ino);
    this.times.forget(node.ino);
    this.entriesChanged(node.parent!);
  }

  /**
   * libfuse's high-level API does not unlink a file that is still open: it renames it to
   * `.fuse_hiddenNNN` and unlinks that name after the last release (a close(2) returns before
   * its RELEASE arrives, so `rm f; rmdir d` right after writing f would meet it). The drive takes
   * the rename as the unlink it stands for: the name is gone at once (the folder is empty, the
   * delete is logged); the hidden name only resolves for libfuse until it unlinks it.
   */
  private async hide(from: string, to: string): Promise<void> {
    const node = await this.lookup(from);
    if (node.kind === 'dir') throw new FsError('EISDIR');
    assertMayDetach(node, node.parent === null ? undefined : this.o.tree.get(node.parent));
    // Its writers go on writing an unlinked file: stat of the hidden name shows what they wrote.
    const session = this.sessions.get(node.ino);
    await this.remove(node, { kind: 'delete', ino: node.ino, ifVersion: node.headVersion });
    this.hidden.set(to, node);
    if (session) this.hiddenSessions.set(node.ino, session);
  }

  /** Deletes a node already removed from the tree whose place a forgotten node had taken. */
  private async removeReplaced(ino: number): Promise<void> {
    await this.o.log.append(this.deleteOf(ino));
  }

  /** The delete of a node this mount replaced by a rename (so no longer in the tree): at the version it knew. */
  private deleteOf(ino: number): DeleteOp {
    const n = this.o.tree.node(ino);
    return n?.kind === 'dir' ? { kind: 'delete', ino, folder: true } : { kind: 'delete', ino, ...(n && { ifVersion: n.headVersion }) };
  }

  async rename(from: string, to: string): Promise<void> {
    // libfuse hides a file still open instead of unlinking it: the mount's own drop arrives as this.
    if (this.forgotten(from)) return;
    // From or into it alike: EROFS (not EXDEV, which would make mv copy into it, or copy out and then fail to remove).
    this.refuseVirtual(from, to);
    if (HIDDEN.test(to.slice(to.lastIndexOf('/') + 1))) return this.hide(from, to);
    const src = await this.lookup(from);
    if (src.parent === null) throw new FsError('EBUSY');
    const { parent, name } = await this.parentOf(to);
    assertMayDetach(src, this.o.tree.get(src.parent));
    assertWritable(parent);
    const dst = this.o.tree.child(parent.ino, name);
    // Onto itself: nothing changes, not even a time.
    if (dst?.ino === src.ino) return;
    if (dst) {
      if (dst.kind === 'dir' && src.kind !== 'dir') throw new FsError('EISDIR');
      if (dst.kind !== 'dir' && src.kind === 'dir') throw new FsError('ENOTDIR');
      if (dst.kind === 'dir') {
        await this.o.tree.ensureListed(dst);
        if (this.o.tree.children(dst.ino).length) throw new FsError('ENOTEMPTY');
      }
    }
    if (src.kind === 'dir' && this.isWithin(parent, src)) throw new FsError('EINVAL', `cannot move "${src.name}" into itself`);
    let replace: number | undefined;
    // The server never heard of the replaced node: forgetting it (in the rename's own transaction:
    // a crash leaves both or neither) is replacing it — or replacing what it had replaced. Else the
    // server replaces it (a file over a file: the destination keeps its history and takes the
    // source's content).
    let forget = dst ? this.o.log.forgettable(dst.ino) : undefined;
    if (dst && forget?.replaced !== undefined && forget.moved) {
      // It had replaced a node the server has and moved on since: that node is deleted.
      await this.removeReplaced(forget.replaced);
      // Looked at again right before the rename is logged (the sender may have started on it meanwhile).
      forget = this.o.log.forgettable(dst.ino);
    }
    if (dst) {
      // Writers of the replaced node write an unlinked file from now on; what was queued of it is moot (dropped below).
      this.sessions.unlink(dst.ino);
      if (!forget) replace = dst.ino;
      // It had replaced a node the server has: replaced in turn where it did so.
      else if (forget.replaced !== undefined && !forget.moved) replace = forget.replaced;
      this.times.forget(dst.ino);
    }
    const oldParent = src.parent;
    const op: MoveOp = { kind: 'move', ino: src.ino, parent: parent.ino, name, ...(replace !== undefined && { replace }) };
    const change = () =>
      this.o.tree.byKernel(() => {
        if (forget && dst) this.o.tree.removeSubtree(dst.ino);
        if (replace !== undefined) this.o.tree.removeSubtree(replace);
        this.o.tree.patch(src.ino, { parent: parent.ino, name });
      });
    await this.o.log.append(op, change, 0, 0, forget);
    // The replaced file's queued content is moot only now that the rename is durable (a crash before leaves it as it was).
    if (dst) await this.o.log.dropContent(dst.ino);
    // The moved node's status changed, and so did the entries of both folders.
    const moved = this.o.tree.get(src.ino);
    if (moved) this.times.changed(moved.ino, this.ownMtime(moved));
    this.entriesChanged(oldParent);
    this.entriesChanged(parent.ino);
  }

  /** `dir` is `node` or lies under it. */
  private isWithin(dir: LocalNode, node: LocalNode): boolean {
    for (let n: LocalNode | undefined = dir; n; n = n.parent === null ? undefined : this.o.tree.get(n.parent)) if (n.ino === node.ino) return true;
    return false;
  }

  async chmod(path: string, mode: number): Promise<void> {
    this.refuseVirtual(path);
    const node = await this.lookup(path);
    // As on Linux's own file systems: a link's mode is always 0777 (chmod follows links; only fchmodat's AT_SYMLINK_NOFOLLOW gets here).
    if (node.kind === 'link') throw new FsError('EOPNOTSUPP');
    assertWritable(node);
    const m = mode & 0o7777;
    await this.o.log.append({ kind: 'setattr', ino: node.ino, mode: m }, () => this.o.tree.byKernel(() => this.o.tree.patch(node.ino, { mode: m })));
    this.times.changed(node.ino, this.ownMtime(node));
  }

  /** Only to the mounting user and group: a single-owner file system (posix.ts). */
  async chown(path: string, uid: number, gid: number): Promise<void> {
    this.refuseVirtual(path);
    const node = await this.lookup(path);
    checkOwnerChange(uid, gid, { uid: this.uid, gid: this.gid });
    this.times.changed(node.ino, this.ownMtime(node));
  }

  /** A regular file (as create, closed at once); FIFOs, sockets and devices are EPERM (posix.ts). */
  async mknod(path: string, mode: number): Promise<void> {
    this.refuseVirtual(path);
    await this.freeName(path);
    checkNodeType(mode);
    await this.release(await this.create(path, mode));
  }

  /**
   * The mount itself is about to set a node's mtime to `mtime` through the kernel (to make it take
   * fresh attributes after a remote change): that utimens changes nothing, also not the mtime of
   * a file a user opened for writing meanwhile.
   */
  readonly expectTouch = {
    begin: (path: string, ino: number, mtime: number): void => void this.touches.set(path, { ino, mtime }),
    end: (path: string): void => void this.touches.delete(path),
  };
  /**
   * The mount itself is about to remove `path` through the kernel (unlink or rmdir) so that the
   * kernel forgets a name whose node left it elsewhere (sync/kernel-refresh.ts): that call changes
   * nothing here, whatever holds the name by then. (A user's own unlink of that very name in the
   * same instant would be taken for it: the file stays, nothing is lost.)
   */
  readonly expectForget = {
    begin: (path: string): void => void this.forgetting.set(path, (this.forgetting.get(path) ?? 0) + 1),
    end: (path: string): void => {
      const n = (this.forgetting.get(path) ?? 1) - 1;
      if (n > 0) this.forgetting.set(path, n);
      else this.forgetting.delete(path);
    },
  };
  private readonly forgetting = new Map<string, number>();

  /** The mount's own drop of a name (true: answer success, change nothing). */
  private forgotten(path: string): boolean {
    return this.forgetting.has(path);
  }

  /** The mount's own touches in flight, by mount path. */
  private readonly touches = new Map<string, { ino: number; mtime: number }>();

  /**
   * Times in ms since the epoch, null = leave unchanged (UTIME_OMIT). The mtime goes to the
   * server (with the content it dates); the atime is kept by the drive (times.ts); ctime is now.
   */
  async utimens(path: string, atime: number | null, mtime: number | null): Promise<void> {
    this.refuseVirtual(path);
    const node = await this.lookup(path);
    if (mtime !== null && !this.touches.has(path)) assertWritable(node);
    if (mtime !== null) {
      const ms = Math.round(mtime);
      // Ours — also when another node took the path meanwhile (a rename here): it must not get that mtime.
      const touch = this.touches.get(path);
      if (touch && (touch.ino !== node.ino || Math.abs(touch.mtime - ms) <= 1)) return;
      await this.setMtime(node, ms);
    }
    const now = this.o.tree.get(node.ino) ?? node;
    this.times.set(node.ino, atime === null ? null : Math.round(atime), mtime !== null, this.ownMtime(now));
  }

  private async setMtime(node: LocalNode, ms: number): Promise<void> {
    const d = this.sessions.get(node.ino);
    // Changes not queued yet carry it.
    if (d && (await this.sessions.setMtime(d, ms))) return;
    // Nothing to change (also the mount's own utimes that makes the kernel take fresh attributes).
    if (!d && ms === this.ownMtime(node)) return;
    // Logged: it rides with a save not sent yet, else it is sent after what is queued for the node.
    await this.o.log.append({ kind: 'setattr', ino: node.ino, mtime: ms }, () => this.o.tree.byKernel(() => this.o.tree.patch(node.ino, { mtime: ms })));
  }

  // --- files ------------------------------------------------------------------------------------

  async create(path: string, mode: number): Promise<number> {
    this.refuseVirtual(path);
    const { parent, name } = await this.parentOf(path);
    // The kernel thought the name free (a stale negative entry): open what is there, as O_CREAT does.
    if (this.o.tree.child(parent.ino, name)) return this.open(path, fsc.O_RDWR);
    const node = await this.makeNode(parent, name, 'file', mode & 0o7777);
    return this.addSessionHandle(await this.sessions.start(node, true), true);
  }

  async open(path: string, flags: number): Promise<number> {
    if (isVirtualPath(path)) return this.openVirtual(path, flags);
    const node = await this.lookup(path);
    if (node.kind === 'dir') throw new FsError('EISDIR');
    // The kernel follows links before it opens; a link itself opens only as O_NOFOLLOW would: ELOOP.
    if (node.kind === 'link') throw new FsError('ELOOP');
    if ((flags & O_ACCMODE) !== fsc.O_RDONLY) assertWritable(node);
    if ((flags & O_ACCMODE) !== fsc.O_RDONLY) return this.addSessionHandle(await this.sessions.start(node, (flags & fsc.O_TRUNC) !== 0), true);
    // Being written here: the reader sees the writes as they happen, as on a local disk.
    const d = this.sessions.get(node.ino);
    if (d) return this.addSessionHandle(d, false);
    const queued = this.o.log.latestContent(node.ino);
    if (queued) {
      try {
        const file = await open(queued.staging, 'r');
        if (!queued.base) return this.handles.add({ ino: node.ino, writable: false, flushed: false, file });
        // Saved on a version without downloading it: the version fills in what the staging file does not hold.
        const base = await this.manifests.at(queued.base.sid, queued.base.version).catch(async (err: unknown) => {
          await file.close();
          throw err;
        });
        const reader = new LayeredReader(file, queued.present ?? [], new ManifestReader(base, this.o.source), queued.base.limit, queued.size);
        return this.handles.add({ ino: node.ino, writable: false, flushed: false, file, reader });
      } catch (err) {
        // Committed and removed in between: the manifest below is the content now.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    const current = this.o.tree.get(node.ino) ?? node;
    return this.handles.add({ ino: node.ino, writable: false, flushed: false, reader: new ManifestReader(await this.manifests.of(current), this.o.source) });
  }

  async read(fh: number, buf: Buffer, length: number, position: number): Promise<number> {
    const h = this.handles.get(fh);
    if (h.session) return this.sessions.read(h.session, buf, length, position);
    if (h.reader) return h.reader.read(buf, length, position);
    if (h.file) return readFully(h.file, buf, length, position);
    throw new FsError('EBADF');
  }

  async write(fh: number, buf: Buffer, length: number, position: number): Promise<number> {
    const h = this.handles.get(fh);
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
    return this.sessions.write(d, buf.subarray(0, length), position);
  }

  async truncate(path: string, size: number): Promise<void> {
    this.refuseVirtual(path);
    const node = await this.lookup(path);
    if (node.kind === 'dir') throw new FsError('EISDIR');
    checkFileSize(size, this.maxFileSize);
    const fh = await this.open(path, size === 0 ? fsc.O_WRONLY | fsc.O_TRUNC : fsc.O_WRONLY);
    this.handles.get(fh).internal = true;
    try {
      await this.ftruncate(fh, size);
    } finally {
      await this.release(fh);
    }
  }

  async ftruncate(fh: number, size: number): Promise<void> {
    const h = this.handles.get(fh);
    const d = h.session;
    if (!d || !h.writable) throw new FsError('EBADF');
    checkFileSize(size, this.maxFileSize);
    h.flushed = false;
    await this.sessions.truncate(d, size);
  }

  /** `fsync`: the staging file and the log reach the disk (survive a power cut, not only a crash). */
  async fsync(fh: number): Promise<void> {
    const h = this.handles.get(fh);
    if (h.session) await this.sessions.sync(h.session);
    else {
      const queued = this.o.log.latestContent(h.ino)?.staging;
      if (queued) {
        const f = await open(queued, 'r').catch(() => undefined);
        await f?.sync();
        await f?.close();
      }
    }
    await this.o.store.sync();
  }

  /**
   * `close(2)` of a descriptor (also of a duplicate: the descriptor may stay open). The kernel
   * answers close after FLUSH, not after RELEASE, so what was written is queued here (invariant 5:
   * on disk before close returns) once every handle open for writing has been closed since its
   * last change — also when the kernel sends the RELEASE of an earlier one after this FLUSH. The
   * session goes on: its handles read and write the live content, the next close queues that.
   */
  async flush(fh: number): Promise<void> {
    const h = this.handles.find(fh);
    const d = h?.session;
    if (!h || !d || !h.writable) return;
    h.flushed = true;
    for (const other of d.handles) if (other.writable && !other.flushed && !other.internal) return;
    // Sent once the file is released: a dup'd descriptor may still write (`cmd > file`).
    this.o.log.hold(d.ino);
    await this.sessions.snapshot(d);
  }

  async release(fh: number): Promise<void> {
    const h = this.handles.find(fh);
    if (!h) return;
    this.handles.delete(fh);
    // An unlinked file's node was kept for its open handles: the last one gone, so is it.
    if (!this.handles.holds(h.ino)) this.o.tree.forget(h.ino);
    if (h.file) await h.file.close().catch(() => undefined);
    const d = h.session;
    try {
      if (d) {
        d.handles.delete(h);
        if (h.writable) await this.sessions.leave(d);
      }
    } finally {
      if (d) this.sessions.endIfUnread(d);
      if (h.writable && !this.handles.writerOf(h.ino)) this.o.log.unhold(h.ino);
    }
  }

  /**
   * Extended attributes are not kept: setting or removing one is ENOTSUP (what the kernel answered
   * before the drive took these calls), and EROFS in the virtual tree, where nothing changes.
   */
  async setxattr(path: string): Promise<void> {
    this.refuseVirtual(path);
    throw new FsError('ENOTSUP');
  }

  async removexattr(path: string): Promise<void> {
    this.refuseVirtual(path);
    throw new FsError('ENOTSUP');
  }

  /**
   * getxattr(2): the drive's `user.stratus.*` attributes (xattrs.ts). Any other name is ENOTSUP
   * without a lookup (`ls -l` then stops asking the drive for ACLs and labels: xattrs.ts).
   */
  async getxattr(path: string, name: string): Promise<Buffer> {
    if (!name.startsWith(XATTR_PREFIX)) throw new FsError('ENOTSUP');
    if (!this.o.xattrs || !isDriveXattr(name) || isVirtualPath(path)) throw new FsError('ENODATA');
    return this.o.xattrs.get(await this.lookup(path), name);
  }

  /** listxattr(2): nothing to list (xattrs.ts: the drive's attributes are read by name, never copied off it). */
  async listxattr(path: string): Promise<string[]> {
    if (!isVirtualPath(path)) await this.lookup(path);
    return [];
  }

  // --- helpers ----------------------------------------------------------------------------------

  /** EROFS for a change that names the virtual tree (`.stratus/` only shows what was). */
  private refuseVirtual(...paths: string[]): void {
    if (paths.some(isVirtualPath)) throw readOnly();
  }

  /** A read-only handle on a file of the virtual tree (a past version). */
  private async openVirtual(path: string, flags: number): Promise<number> {
    const file = await this.virtual.open(path, flags);
    return this.handles.add({ ino: file.ino, writable: false, flushed: false, reader: file.reader, stat: file.stat });
  }

  /** Makes a node here and logs its creation (the sender creates it on the server, settling name clashes there). */
  private async makeNode(parent: LocalNode, name: string, kind: NodeKind, mode: number, target?: string): Promise<LocalNode> {
    assertWritable(parent);
    const mtime = Date.now();
    const ino = this.o.tree.newIno();
    let node: LocalNode | undefined;
    await this.o.log.append({ kind: 'create', ino, parent: parent.ino, name, nodeKind: kind, mode, mtime, ...(target !== undefined && { target }) }, () => {
      const size = target === undefined ? 0 : Buffer.byteLength(target, 'utf8');
      node = this.o.tree.addLocal(ino, { parent: parent.ino, name, kind, headVersion: 0, size, mtime, mode, listed: kind === 'dir', ...(target !== undefined && { target }) });
    });
    this.entriesChanged(parent.ino);
    return node!;
  }

  private addSessionHandle(d: WriteSession, writable: boolean): number {
    const h = { ino: d.ino, writable, flushed: false, session: d };
    d.handles.add(h);
    return this.handles.add(h);
  }

  /** A node's own mtime: its open writers', else the tree's (which has what was queued here). */
  private ownMtime(node: LocalNode): number {
    return this.sessions.get(node.ino)?.mtime ?? node.mtime;
  }

  /** Entries of the folder changed here now: its mtime and ctime move (times.ts). */
  private entriesChanged(dirIno: number): void {
    const dir = this.o.tree.get(dirIno);
    if (dir) this.times.entriesChanged(dir.ino, this.ownMtime(dir));
  }

  /** Sizes and times as the mount shows them: open writers first, then the tree's (which has what was queued here). */
  private stat(node: LocalNode, session?: WriteSession): Stat {
    let size = node.size;
    let mtime = node.mtime;
    const d = session ?? this.sessions.get(node.ino);
    if (d) ({ size, mtime } = d);
    const times = this.times.shown(node.ino, mtime);
    const isDir = node.kind === 'dir';
    return {
      ino: node.ino,
      mode: (isDir ? S_IFDIR : node.kind === 'link' ? S_IFLNK : S_IFREG) | (shownMode(node) & 0o7777),
      uid: this.uid,
      gid: this.gid,
      size: isDir ? 4096 : size,
      nlink: isDir ? this.o.tree.dirLinks(node) : 1,
      blksize: 4096,
      blocks: Math.ceil((isDir ? 4096 : size) / 512),
      ...times,
    };
  }

  private async lookup(path: string): Promise<LocalNode> {
    const hidden = this.hidden.get(path);
    if (hidden) return this.o.tree.node(hidden.ino) ?? hidden;
    const node = await this.o.tree.resolve(path);
    if (!node) throw await lookupFailure(this.o.tree, path);
    return node;
  }

  /** A name a new node may take: its folder, and EEXIST when the name is taken. */
  private async freeName(path: string): Promise<{ parent: LocalNode; name: string }> {
    const at = await this.parentOf(path);
    if (this.o.tree.child(at.parent.ino, at.name)) throw new FsError('EEXIST');
    return at;
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
    // Refused here, as the server would: a name taken now must be one the server takes later.
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
