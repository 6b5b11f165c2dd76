import type { Test } from 'tap';
import type { Driver } from './driver.js';
import { cases as errors } from './cases/errors.js';
import { cases as listing } from './cases/listing.js';
import { cases as modes } from './cases/modes.js';
import { cases as names } from './cases/names.js';
import { cases as open } from './cases/open.js';
import { cases as readWrite } from './cases/read-write.js';
import { cases as remove } from './cases/remove.js';
import { cases as rename } from './cases/rename.js';
import { cases as times } from './cases/times.js';
import { cases as truncate } from './cases/truncate.js';

/**
 * The POSIX conformance suite (rclone's vfs/vfstest is the model): every case is written once,
 * against the Driver interface, and run by test/conformance/vfs.test.ts on the in-process Vfs and
 * by test/conformance/mount.test.ts on a real FUSE mount of a real server process.
 */

/** One behaviour, checked in a folder of its own (paths inside it are "/…"). */
export interface Case {
  name: string;
  run(t: Test, fs: Driver): Promise<void>;
}

export const suite: Record<string, Case[]> = { open, 'read-write': readWrite, truncate, rename, remove, listing, times, modes, errors, names };

/** Runs every case as a subtest, each in a fresh folder `/NN-group` of the drive. */
export async function runSuite(t: Test, fs: Driver, opts: { only?: RegExp } = {}): Promise<void> {
  let n = 0;
  for (const [group, list] of Object.entries(suite)) {
    for (const c of list) {
      const title = `${group}: ${c.name}`;
      if (opts.only && !opts.only.test(title)) continue;
      const dir = `/${String(++n).padStart(3, '0')}-${group}`;
      await t.test(title, async (t) => {
        await fs.mkdir(dir, 0o755);
        await c.run(t, scoped(fs, dir));
      });
    }
  }
}

/** The driver seen from inside `dir`: "/x" is `dir`/x. */
export function scoped(fs: Driver, dir: string): Driver {
  const p = (rel: string) => (rel === '/' ? dir : `${dir}${rel}`);
  return {
    name: fs.name,
    owner: fs.owner,
    open: (rel, flags, mode) => fs.open(p(rel), flags, mode),
    read: (fd, length, position) => fs.read(fd, length, position),
    write: (fd, data, position) => fs.write(fd, data, position),
    ftruncate: (fd, size) => fs.ftruncate(fd, size),
    fstat: (fd) => fs.fstat(fd),
    fsync: (fd) => fs.fsync(fd),
    close: (fd) => fs.close(fd),
    stat: (rel) => fs.stat(p(rel)),
    lstat: (rel) => fs.lstat(p(rel)),
    readdir: (rel) => fs.readdir(p(rel)),
    mkdir: (rel, mode) => fs.mkdir(p(rel), mode),
    rmdir: (rel) => fs.rmdir(p(rel)),
    unlink: (rel) => fs.unlink(p(rel)),
    rename: (from, to) => fs.rename(p(from), p(to)),
    truncate: (rel, size) => fs.truncate(p(rel), size),
    chmod: (rel, mode) => fs.chmod(p(rel), mode),
    chown: (rel, uid, gid) => fs.chown(p(rel), uid, gid),
    utimes: (rel, atime, mtime) => fs.utimes(p(rel), atime, mtime),
    mknod: (rel, mode, dev) => fs.mknod(p(rel), mode, dev),
    bindSocket: (rel) => fs.bindSocket(p(rel)),
    settle: () => fs.settle(),
    serverState: () => fs.serverState(),
  };
}
