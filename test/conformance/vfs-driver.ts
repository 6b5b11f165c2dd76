import { toErrno } from '../../mount/model/errors.js';
import type { Stat as VfsStat, Vfs } from '../../mount/vfs/vfs.js';
import { constants } from 'node:os';
import { drained, type VfsHarness } from '../helpers/vfs.js';
import { errnoError, errnoOf, O_ACCMODE, O_APPEND, O_CREAT, O_DIRECTORY, O_EXCL, O_RDONLY, O_TRUNC, O_WRONLY, S_IFDIR, S_IFMT, S_IFSOCK, type Driver, type Stat } from './driver.js';

const errnoNames = new Map(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/** A Vfs failure as the FUSE adapter would answer it: an Error with the errno name. */
function asErrno(err: unknown, what: string): NodeJS.ErrnoException {
  const code = errnoNames.get(toErrno(err)) ?? 'EIO';
  return Object.assign(errnoError(code, what), { cause: err });
}

interface Fd {
  path: string;
  flags: number;
  /** The Vfs handle; none for a folder opened read-only (the kernel serves those without open). */
  fh?: number;
  offset: number;
}

function toStat(s: VfsStat): Stat {
  return { mode: s.mode, size: s.size, nlink: s.nlink, uid: s.uid, gid: s.gid, atimeMs: s.atime, mtimeMs: s.mtime, ctimeMs: s.ctime };
}

/**
 * The conformance driver over the in-process Vfs. It does what the kernel's VFS and libfuse do in
 * front of the FUSE adapter and nothing more: O_CREAT/O_EXCL decided on a lookup, O_TRUNC sent as
 * an ftruncate after the open (no atomic_o_trunc), the O_APPEND position taken from getattr, the
 * descriptor's access mode and offset, close as FLUSH then RELEASE. Everything else is the Vfs's
 * own answer, errors turned into errno names as the adapter turns them.
 */
export class VfsDriver implements Driver {
  readonly name = 'vfs';
  readonly owner: { uid: number; gid: number };
  private readonly fds = new Map<number, Fd>();
  private nextFd = 3;
  private readonly vfs: Vfs;

  constructor(
    private readonly h: VfsHarness,
    private readonly state: () => Promise<string>,
  ) {
    this.vfs = h.vfs;
    this.owner = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  }

  /**
   * Runs a Vfs call as a FUSE request arrives, in an event-loop turn of its own (so a loop of
   * calls never starves the I/O the Vfs waits on); its failure becomes an errno Error.
   */
  private async call<T>(what: string, p: () => Promise<T>): Promise<T> {
    await new Promise((r) => setImmediate(r));
    try {
      return await p();
    } catch (err) {
      throw asErrno(err, what);
    }
  }

  private fd(fd: number): Fd {
    const f = this.fds.get(fd);
    if (!f) throw errnoError('EBADF', `descriptor ${fd}`);
    return f;
  }

  async open(path: string, flags: number, mode = 0o644): Promise<number> {
    const what = `open ${path}`;
    let existing: VfsStat | undefined;
    try {
      existing = await this.vfs.getattr(path);
    } catch (err) {
      // Only a missing last component may be created.
      if (!(flags & O_CREAT) || toErrno(err) !== constants.errno.ENOENT) throw asErrno(err, what);
    }
    let fh: number | undefined;
    if (!existing) fh = await this.call(what, () => this.vfs.create(path, mode));
    else {
      if (flags & O_CREAT && flags & O_EXCL) throw errnoError('EEXIST', what);
      const dir = (existing.mode & S_IFMT) === S_IFDIR;
      if (dir && ((flags & O_ACCMODE) !== O_RDONLY || flags & O_CREAT)) throw errnoError('EISDIR', what);
      if (!dir && flags & O_DIRECTORY) throw errnoError('ENOTDIR', what);
      if (!dir) {
        fh = await this.call(what, () => this.vfs.open(path, flags & ~O_TRUNC));
        if (flags & O_TRUNC && (flags & O_ACCMODE) !== O_RDONLY) {
          const opened = fh;
          await this.call(what, () => this.vfs.ftruncate(opened, 0)).catch(async (err: unknown) => {
            await this.vfs.release(opened);
            throw err;
          });
        }
      }
    }
    const n = this.nextFd++;
    this.fds.set(n, { path, flags, fh, offset: 0 });
    return n;
  }

  async read(fd: number, length: number, position: number | null = null): Promise<Buffer> {
    const f = this.fd(fd);
    if (f.fh === undefined) throw errnoError('EISDIR', `read ${f.path}`);
    if ((f.flags & O_ACCMODE) === O_WRONLY) throw errnoError('EBADF', `read ${f.path}`);
    const fh = f.fh;
    const at = position ?? f.offset;
    const buf = Buffer.alloc(length);
    const n = await this.call(`read ${f.path}`, () => this.vfs.read(fh, buf, length, at));
    if (position === null) f.offset += n;
    return buf.subarray(0, n);
  }

  async write(fd: number, data: Buffer, position: number | null = null): Promise<number> {
    const f = this.fd(fd);
    if (f.fh === undefined || (f.flags & O_ACCMODE) === O_RDONLY) throw errnoError('EBADF', `write ${f.path}`);
    const fh = f.fh;
    const append = (f.flags & O_APPEND) !== 0;
    const at = append ? (await this.call(`write ${f.path}`, () => this.vfs.getattr(f.path))).size : (position ?? f.offset);
    const n = await this.call(`write ${f.path}`, () => this.vfs.write(fh, data, data.length, at));
    if (position === null || append) f.offset = at + n;
    return n;
  }

  async ftruncate(fd: number, size: number): Promise<void> {
    const f = this.fd(fd);
    if (f.fh === undefined || (f.flags & O_ACCMODE) === O_RDONLY) throw errnoError('EINVAL', `ftruncate ${f.path}`);
    const fh = f.fh;
    await this.call(`ftruncate ${f.path}`, () => this.vfs.ftruncate(fh, size));
  }

  async fstat(fd: number): Promise<Stat> {
    const f = this.fd(fd);
    // As the FUSE adapter: by the handle when there is one (fgetattr).
    const fh = f.fh;
    return toStat(await this.call(`fstat ${f.path}`, () => (fh === undefined ? this.vfs.getattr(f.path) : this.vfs.fgetattr(fh))));
  }

  async fsync(fd: number): Promise<void> {
    const f = this.fd(fd);
    const fh = f.fh;
    if (fh !== undefined) await this.call(`fsync ${f.path}`, () => this.vfs.fsync(fh));
  }

  async close(fd: number): Promise<void> {
    const f = this.fd(fd);
    this.fds.delete(fd);
    const fh = f.fh;
    if (fh === undefined) return;
    try {
      await this.call(`close ${f.path}`, () => this.vfs.flush(fh));
    } finally {
      await this.vfs.release(fh);
    }
  }

  stat = async (path: string): Promise<Stat> => toStat(await this.call(`stat ${path}`, () => this.vfs.getattr(path)));
  lstat = this.stat;
  readdir = async (path: string): Promise<string[]> => (await this.call(`readdir ${path}`, () => this.vfs.readdir(path))).names;
  mkdir = (path: string, mode: number): Promise<void> => this.call(`mkdir ${path}`, () => this.vfs.mkdir(path, mode));
  rmdir = (path: string): Promise<void> => this.call(`rmdir ${path}`, () => this.vfs.rmdir(path));
  unlink = (path: string): Promise<void> => this.call(`unlink ${path}`, () => this.vfs.unlink(path));
  rename = (from: string, to: string): Promise<void> => this.call(`rename ${from} ${to}`, () => this.vfs.rename(from, to));
  truncate = (path: string, size: number): Promise<void> => this.call(`truncate ${path}`, () => this.vfs.truncate(path, size));
  chmod = (path: string, mode: number): Promise<void> => this.call(`chmod ${path}`, () => this.vfs.chmod(path, mode));
  chown = (path: string, uid: number, gid: number): Promise<void> => this.call(`chown ${path}`, () => this.vfs.chown(path, uid, gid));
  /** As the kernel: a lookup first (EEXIST without asking the file system), then MKNOD. */
  mknod = async (path: string, mode: number): Promise<void> => {
    if ((await errnoOf(this.vfs.getattr(path))) === 'OK') throw errnoError('EEXIST', `mknod ${path}`);
    await this.call(`mknod ${path}`, () => this.vfs.mknod(path, mode));
  };
  /** bind(2) of a Unix socket is a MKNOD of S_IFSOCK for the file system. */
  bindSocket = (path: string): Promise<void> => this.mknod(path, S_IFSOCK | 0o755);
  utimes = (path: string, atimeMs: number | null, mtimeMs: number | null): Promise<void> =>
    this.call(`utimes ${path}`, () => this.vfs.utimens(path, atimeMs, mtimeMs));

  settle = (): Promise<void> => drained(this.h.queue);
  serverState = (): Promise<string> => this.state();

  /** Descriptors the cases left open (a case must close what it opens). */
  get openDescriptors(): number {
    return this.fds.size;
  }
}
