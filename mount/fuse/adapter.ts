import { constants } from 'node:os';
import type { Say } from '../log.js';
import { toErrno } from '../model/errors.js';
import type { Vfs } from '../vfs/vfs.js';

type Cb = (code: number, ...rest: unknown[]) => void;

/** errno → its name (5 → EIO), for log lines. */
const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/**
 * fuse-native callbacks → Vfs calls: the thin edge. Every callback answers exactly once, with
 * -errno on failure; nothing here waits synchronously.
 */
export function fuseOps(vfs: Vfs, log?: Say): Record<string, (...args: never[]) => void> {
  // An EIO (the server does not answer, a block failed its check…) is one error line naming the
  // file (other errnos too with STRATUS_DEBUG_FUSE); an error that is not an expected condition
  // (no code: a bug) adds its stack at debug level.
  const fail = (cb: Cb, op: string, path: string, err: unknown) => {
    const errno = toErrno(err);
    if (errno === 5 || (process.env.STRATUS_DEBUG_FUSE && errno !== 2)) {
      const e = err as { code?: unknown; message?: unknown; stack?: unknown } | undefined;
      const what = `${op}${path ? ` of ${path}` : ''} failed (${ERRNO_NAMES.get(errno) ?? `errno ${errno}`}): ${typeof e?.message === 'string' ? e.message : String(err)}`;
      log?.(what, errno === 5 ? 'error' : 'info');
      if (typeof e?.code !== 'string' && typeof e?.stack === 'string') log?.(e.stack, 'debug');
    }
    cb(-errno);
  };
  const run = <T>(cb: Cb, op: string, path: string, p: Promise<T>, ok: (v: T) => unknown[]) => {
    p.then((v) => cb(0, ...ok(v)), (err: unknown) => fail(cb, op, path, err));
  };
  // read/write answer the byte count in the code slot.
  const count = (cb: Cb, op: string, path: string, p: Promise<number>) => {
    p.then((n) => cb(n), (err: unknown) => fail(cb, op, path, err));
  };
  const none = () => [];
  return {
    getattr: (path: string, cb: Cb) => run(cb, 'getattr', path, vfs.getattr(path), (s) => [s]),
    // By the handle: the path of a file unlinked while open may be gone (it crosses as "").
    fgetattr: (path: string, fd: number, cb: Cb) => run(cb, 'fgetattr', path, vfs.fgetattr(fd), (s) => [s]),
    // `.` and `..` as every POSIX directory lists them (`ls -a`); `..` shows the folder's own attributes.
    readdir: (path: string, cb: Cb) =>
      run(cb, 'readdir', path, Promise.all([vfs.readdir(path), vfs.getattr(path)]), ([r, self]) => [['.', '..', ...r.names], [self, self, ...r.stats]]),
    statfs: (_path: string, cb: Cb) => cb(0, vfs.statfs()),
    access: (_path: string, _mode: number, cb: Cb) => cb(0),
    open: (path: string, flags: number, cb: Cb) => run(cb, 'open', path, vfs.open(path, flags), (fd) => [fd]),
    create: (path: string, mode: number, cb: Cb) => run(cb, 'create', path, vfs.create(path, mode), (fd) => [fd]),
    read: (path: string, fd: number, buf: Buffer, len: number, pos: number, cb: Cb) => count(cb, 'read', path, vfs.read(fd, buf, len, pos)),
    write: (path: string, fd: number, buf: Buffer, len: number, pos: number, cb: Cb) => count(cb, 'write', path, vfs.write(fd, buf, len, pos)),
    release: (path: string, fd: number, cb: Cb) => run(cb, 'release', path, vfs.release(fd), none),
    flush: (path: string, fd: number, cb: Cb) => run(cb, 'flush', path, vfs.flush(fd), none),
    fsync: (path: string, _datasync: number, fd: number, cb: Cb) => run(cb, 'fsync', path, vfs.fsync(fd), none),
    fsyncdir: (_path: string, _datasync: number, _fd: number, cb: Cb) => cb(0),
    truncate: (path: string, size: number, cb: Cb) => run(cb, 'truncate', path, vfs.truncate(path, size), none),
    ftruncate: (path: string, fd: number, size: number, cb: Cb) => run(cb, 'ftruncate', path, vfs.ftruncate(fd, size), none),
    utimens: (path: string, atime: number | null, mtime: number | null, cb: Cb) => run(cb, 'utimens', path, vfs.utimens(path, atime, mtime), none),
    chmod: (path: string, mode: number, cb: Cb) => run(cb, 'chmod', path, vfs.chmod(path, mode), none),
    chown: (path: string, uid: number, gid: number, cb: Cb) => run(cb, 'chown', path, vfs.chown(path, uid, gid), none),
    mknod: (path: string, mode: number, _dev: number, cb: Cb) => run(cb, 'mknod', path, vfs.mknod(path, mode), none),
    mkdir: (path: string, mode: number, cb: Cb) => run(cb, 'mkdir', path, vfs.mkdir(path, mode), none),
    // libfuse's symlink(linkname, path): the target comes first. On failure fuse-native answers readlink with its default ''.
    symlink: (target: string, path: string, cb: Cb) => run(cb, 'symlink', path, vfs.symlink(target, path), none),
    readlink: (path: string, cb: Cb) => run(cb, 'readlink', path, vfs.readlink(path), (target) => [target]),
    rmdir: (path: string, cb: Cb) => run(cb, 'rmdir', path, vfs.rmdir(path), none),
    unlink: (path: string, cb: Cb) => run(cb, 'unlink', path, vfs.unlink(path), none),
    rename: (src: string, dest: string, cb: Cb) => run(cb, 'rename', src, vfs.rename(src, dest), none),
    setxattr: (path: string, _name: string, _value: Buffer, _position: number, _flags: number, cb: Cb) => run(cb, 'setxattr', path, vfs.setxattr(path), none),
    removexattr: (path: string, _name: string, cb: Cb) => run(cb, 'removexattr', path, vfs.removexattr(path), none),
    // Other names than the drive's answer ENODATA without a lookup: `ls -l` asks for ACLs of every entry.
    getxattr: (path: string, name: string, _position: number, cb: Cb) => run(cb, 'getxattr', path, vfs.getxattr(path, name), (value) => [value]),
    listxattr: (path: string, cb: Cb) => run(cb, 'listxattr', path, vfs.listxattr(path), (names) => [names]),
  };
}
