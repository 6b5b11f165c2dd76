import { toErrno } from '../model/errors.js';
import type { Vfs } from '../vfs/vfs.js';

type Cb = (code: number, ...rest: unknown[]) => void;

/**
 * fuse-native callbacks → Vfs calls: the thin edge. Every callback answers exactly once, with
 * -errno on failure; nothing here waits synchronously.
 */
export function fuseOps(vfs: Vfs, log?: (msg: string) => void): Record<string, (...args: never[]) => void> {
  const fail = (cb: Cb, op: string, err: unknown) => {
    const errno = toErrno(err);
    if (errno === 5 || (process.env.STRATUS_DEBUG_FUSE && errno !== 2)) log?.(`${op} failed (errno ${errno}): ${(err as Error)?.stack ?? String(err)}`);
    cb(-errno);
  };
  const run = <T>(cb: Cb, op: string, p: Promise<T>, ok: (v: T) => unknown[]) => {
    p.then((v) => cb(0, ...ok(v)), (err: unknown) => fail(cb, op, err));
  };
  // read/write answer the byte count in the code slot.
  const count = (cb: Cb, op: string, p: Promise<number>) => {
    p.then((n) => cb(n), (err: unknown) => fail(cb, op, err));
  };
  const none = () => [];
  return {
    getattr: (path: string, cb: Cb) => run(cb, 'getattr', vfs.getattr(path), (s) => [s]),
    // By the handle: the path of a file unlinked while open may be gone (it crosses as "").
    fgetattr: (_path: string, fd: number, cb: Cb) => run(cb, 'fgetattr', vfs.fgetattr(fd), (s) => [s]),
    // `.` and `..` as every POSIX directory lists them (`ls -a`); `..` shows the folder's own attributes.
    readdir: (path: string, cb: Cb) =>
      run(cb, 'readdir', Promise.all([vfs.readdir(path), vfs.getattr(path)]), ([r, self]) => [['.', '..', ...r.names], [self, self, ...r.stats]]),
    statfs: (_path: string, cb: Cb) => cb(0, vfs.statfs()),
    access: (_path: string, _mode: number, cb: Cb) => cb(0),
    open: (path: string, flags: number, cb: Cb) => run(cb, 'open', vfs.open(path, flags), (fd) => [fd]),
    create: (path: string, mode: number, cb: Cb) => run(cb, 'create', vfs.create(path, mode), (fd) => [fd]),
    read: (_path: string, fd: number, buf: Buffer, len: number, pos: number, cb: Cb) => count(cb, 'read', vfs.read(fd, buf, len, pos)),
    write: (_path: string, fd: number, buf: Buffer, len: number, pos: number, cb: Cb) => count(cb, 'write', vfs.write(fd, buf, len, pos)),
    release: (_path: string, fd: number, cb: Cb) => run(cb, 'release', vfs.release(fd), none),
    flush: (_path: string, fd: number, cb: Cb) => run(cb, 'flush', vfs.flush(fd), none),
    fsync: (_path: string, _datasync: number, fd: number, cb: Cb) => run(cb, 'fsync', vfs.fsync(fd), none),
    fsyncdir: (_path: string, _datasync: number, _fd: number, cb: Cb) => cb(0),
    truncate: (path: string, size: number, cb: Cb) => run(cb, 'truncate', vfs.truncate(path, size), none),
    ftruncate: (_path: string, fd: number, size: number, cb: Cb) => run(cb, 'ftruncate', vfs.ftruncate(fd, size), none),
    utimens: (path: string, atime: number | null, mtime: number | null, cb: Cb) => run(cb, 'utimens', vfs.utimens(path, atime, mtime), none),
    chmod: (path: string, mode: number, cb: Cb) => run(cb, 'chmod', vfs.chmod(path, mode), none),
    chown: (path: string, uid: number, gid: number, cb: Cb) => run(cb, 'chown', vfs.chown(path, uid, gid), none),
    mknod: (path: string, mode: number, _dev: number, cb: Cb) => run(cb, 'mknod', vfs.mknod(path, mode), none),
    mkdir: (path: string, mode: number, cb: Cb) => run(cb, 'mkdir', vfs.mkdir(path, mode), none),
    // libfuse's symlink(linkname, path): the target comes first. On failure fuse-native answers readlink with its default ''.
    symlink: (target: string, path: string, cb: Cb) => run(cb, 'symlink', vfs.symlink(target, path), none),
    readlink: (path: string, cb: Cb) => run(cb, 'readlink', vfs.readlink(path), (target) => [target]),
    rmdir: (path: string, cb: Cb) => run(cb, 'rmdir', vfs.rmdir(path), none),
    unlink: (path: string, cb: Cb) => run(cb, 'unlink', vfs.unlink(path), none),
    rename: (src: string, dest: string, cb: Cb) => run(cb, 'rename', vfs.rename(src, dest), none),
    setxattr: (path: string, _name: string, _value: Buffer, _position: number, _flags: number, cb: Cb) => run(cb, 'setxattr', vfs.setxattr(path), none),
    removexattr: (path: string, _name: string, cb: Cb) => run(cb, 'removexattr', vfs.removexattr(path), none),
  };
}
