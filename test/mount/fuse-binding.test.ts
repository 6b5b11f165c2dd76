import { execFile, spawn } from 'node:child_process';
import { access, lstat, mkdir, mkdtemp, readdir, readlink, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import {
  Errno,
  FUSE_NATIVE_OPTIONS,
  fuseOptionString,
  loadFuse,
  mountFuse,
  type FuseOperations,
  type FuseStat,
  type MountedFuse,
} from '../../mount/fuse/binding.js';
import { canonicalMountpoint, checkMountpoint, cleanStaleMount, mountsAt, unmount, unmountIfMounted } from '../../mount/fuse/stale.js';

/*
 * Real FUSE mounts served by this process. Everything that touches a mount goes through async
 * child processes or fs.promises: the FUSE callbacks run on this event loop, so a synchronous
 * call against the mount would deadlock the test.
 */

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The compiled binding (npm test builds dist first), for the child process that gets SIGKILLed. */
const compiledBinding = pathToFileURL(path.join(root, 'dist', 'mount', 'fuse', 'binding.js')).href;
const run = promisify(execFile);
const utc = { env: { ...process.env, TZ: 'UTC', LC_ALL: 'C' } };

interface Node {
  dir: boolean;
  mode: number;
  data: Buffer;
  atime: number;
  mtime: number;
  ctime: number;
  /** A symbolic link's target (its data holds the same bytes, so its size is their length). */
  target?: string;
}

/** A tiny in-memory file system that records what reaches utimens, write and symlink. */
class MemFs {
  readonly nodes = new Map<string, Node>();
  readonly utimens: Array<{ path: string; atime: number | null; mtime: number | null }> = [];
  readonly writes: number[] = [];
  readonly symlinks: Array<{ target: string; path: string }> = [];
  private nextFd = 10;

  constructor() {
    this.nodes.set('/', this.node(true, 0o755));
  }

  private node(dir: boolean, perm: number): Node {
    const now = Date.now();
    return { dir, mode: (dir ? 0o040000 : 0o100000) | (perm & 0o7777), data: Buffer.alloc(0), atime: now, mtime: now, ctime: now };
  }

  private stat(n: Node): FuseStat {
    return {
      mode: n.mode,
      size: n.data.length,
      nlink: n.dir ? 2 : 1,
      uid: process.getuid?.() ?? 0,
      gid: process.getgid?.() ?? 0,
      blksize: 4096,
      blocks: Math.ceil(n.data.length / 512),
      atime: n.atime,
      mtime: n.mtime,
      ctime: n.ctime,
    };
  }

  private children(dir: string): string[] {
    const prefix = dir === '/' ? '/' : `${dir}/`;
    return [...this.nodes.keys()].filter((p) => p !== '/' && p.startsWith(prefix) && !p.slice(prefix.length).includes('/')).map((p) => p.slice(prefix.length));
  }

  private resize(n: Node, size: number): void {
    const data = Buffer.alloc(size);
    n.data.copy(data, 0, 0, Math.min(size, n.data.length));
    n.data = data;
    n.mtime = n.ctime = Date.now();
  }

  ops(): FuseOperations {
    const get = (p: string) => this.nodes.get(p);
    return {
      getattr: (p, cb) => {
        const n = get(p);
        if (n) cb(0, this.stat(n));
        else cb(Errno.ENOENT);
      },
      readdir: (p, cb) => {
        const names = this.children(p);
        cb(0, names, names.map((name) => this.stat(get(path.posix.join(p, name))!)));
      },
      statfs: (_p, cb) => cb(0, { bsize: 4096, frsize: 4096, blocks: 1 << 20, bfree: 1 << 20, bavail: 1 << 20, files: 1 << 20, ffree: 1 << 20, favail: 1 << 20, namemax: 255 }),
      open: (p, _flags, cb) => (get(p) ? cb(0, this.nextFd++) : cb(Errno.ENOENT)),
      create: (p, mode, cb) => {
        this.nodes.set(p, this.node(false, mode));
        cb(0, this.nextFd++);
      },
      read: (p, _fd, buf, len, pos, cb) => {
        const n = get(p);
        if (!n) return cb(Errno.ENOENT);
        const slice = n.data.subarray(pos, pos + len);
        slice.copy(buf);
        cb(slice.length);
      },
      write: (p, _fd, buf, len, pos, cb) => {
        const n = get(p);
        if (!n) return cb(Errno.ENOENT);
        this.writes.push(len);
        if (pos + len > n.data.length) this.resize(n, pos + len);
        buf.copy(n.data, pos, 0, len);
        n.mtime = n.ctime = Date.now();
        cb(len);
      },
      release: (_p, _fd, cb) => cb(0),
      flush: (_p, _fd, cb) => cb(0),
      fsync: (_p, _datasync, _fd, cb) => cb(0),
      truncate: (p, size, cb) => {
        const n = get(p);
        if (!n) return cb(Errno.ENOENT);
        this.resize(n, size);
        cb(0);
      },
      ftruncate: (p, _fd, size, cb) => {
        const n = get(p);
        if (!n) return cb(Errno.ENOENT);
        this.resize(n, size);
        cb(0);
      },
      utimens: (p, atime, mtime, cb) => {
        const n = get(p);
        if (!n) return cb(Errno.ENOENT);
        this.utimens.push({ path: p, atime, mtime });
        if (atime !== null) n.atime = atime;
        if (mtime !== null) n.mtime = mtime;
        n.ctime = Date.now();
        cb(0);
      },
      chmod: (p, mode, cb) => {
        const n = get(p);
        if (!n) return cb(Errno.ENOENT);
        n.mode = (n.mode & ~0o7777) | (mode & 0o7777);
        cb(0);
      },
      chown: (_p, _uid, _gid, cb) => cb(0),
      symlink: (target, p, cb) => {
        this.symlinks.push({ target, path: p });
        if (this.nodes.has(p)) return cb(Errno.EEXIST);
        this.nodes.set(p, { ...this.node(false, 0o777), mode: 0o120777, data: Buffer.from(target), target });
        cb(0);
      },
      readlink: (p, cb) => {
        const n = get(p);
        if (!n) return cb(Errno.ENOENT);
        if (n.target === undefined) return cb(Errno.EINVAL);
        cb(0, n.target);
      },
      mkdir: (p, mode, cb) => {
        this.nodes.set(p, this.node(true, mode));
        cb(0);
      },
      rmdir: (p, cb) => {
        if (this.children(p).length) return cb(Errno.ENOTEMPTY);
        this.nodes.delete(p);
        cb(0);
      },
      unlink: (p, cb) => {
        this.nodes.delete(p);
        cb(0);
      },
      rename: (src, dest, cb) => {
        const n = get(src);
        if (!n) return cb(Errno.ENOENT);
        this.nodes.delete(src);
        this.nodes.set(dest, n);
        cb(0);
      },
    };
  }
}

async function tempDir(t: Test, prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  t.teardown(async () => {
    await unmountIfMounted(dir).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });
  return dir;
}

/** A MemFs mounted on a fresh temp mountpoint, always unmounted when the test ends. */
async function mountMem(t: Test, opts: Parameters<typeof mountFuse>[2] = {}): Promise<{ fs: MemFs; mnt: string; handle: MountedFuse }> {
  const mnt = await tempDir(t, 'stratus-fuse-');
  const fs = new MemFs();
  const handle = await mountFuse(mnt, fs.ops(), opts);
  t.teardown(() => handle.unmount().catch(() => undefined));
  return { fs, mnt, handle };
}

const fuseAvailable = await access('/dev/fuse').then(
  () => true,
  () => false,
);
const skip = fuseAvailable ? false : 'no /dev/fuse on this machine';

t.test('mount options: a raw -o string fuse-native cannot build, and no per-operation timeout', async (t) => {
  t.equal(
    fuseOptionString(),
    '-ofsname=stratus,subtype=stratus,default_permissions,use_ino,big_writes,auto_cache,max_read=131072,attr_timeout=1,entry_timeout=1,negative_timeout=0',
  );
  t.equal(
    fuseOptionString({ attrTimeout: 0, entryTimeout: 2.5, allowOther: true }),
    '-ofsname=stratus,subtype=stratus,default_permissions,use_ino,big_writes,auto_cache,max_read=131072,attr_timeout=0,entry_timeout=2.5,negative_timeout=0,allow_other',
    'a 0 timeout is kept (fuse-native would drop it), allow_other only when asked',
  );
  t.throws(() => fuseOptionString({ attrTimeout: -1 }), RangeError);
  t.throws(() => fuseOptionString({ entryTimeout: Number.NaN }), RangeError);
  t.equal(FUSE_NATIVE_OPTIONS.timeout, false);

  const Fuse = loadFuse();
  t.ok(Fuse.STRATUS_PATCH >= 1, 'the loaded addon is the patched build');
  const fuse = new Fuse('/nonexistent-mountpoint', {}, { attrTimeout: 3 });
  t.equal(fuse.timeout, 0, 'fuse-native arms no per-operation timer (its default fails a callback slower than 15 s with ETIMEDOUT)');
  t.equal(fuse.opts.timeout, false);
  t.equal(fuse._fuseOptions(), fuseOptionString({ attrTimeout: 3 }));
  for (const [name, value] of Object.entries(Errno)) t.equal(Fuse[name as keyof typeof Errno], value, name);
  t.equal(Fuse.ENOENT, -2);
});

t.test('a live mount carries the options', { skip }, async (t) => {
  const { mnt } = await mountMem(t);
  const [entry] = await mountsAt(await canonicalMountpoint(mnt));
  t.match(entry, { fstype: 'fuse.stratus', source: 'stratus' });
  const { stdout } = await run('grep', ['-F', ` ${mnt} `, '/proc/self/mountinfo']);
  t.match(stdout, /default_permissions/);
  t.match(stdout, /max_read=131072/);
});

t.test('utimens receives atime and mtime, and null for the one left unchanged', { skip }, async (t) => {
  const { fs, mnt } = await mountMem(t);
  const file = path.join(mnt, 'f');
  await run('touch', [file]);
  const last = () => fs.utimens.at(-1);

  fs.utimens.length = 0;
  await run('touch', ['-d', '2001-02-03 04:05:06', file], utc);
  t.same(last(), { path: '/f', atime: 981173106000, mtime: 981173106000 }, 'touch -d');

  // Distinct atime and mtime in one call (what cp -p, rsync -a and tar x do).
  await run(process.execPath, ['-e', 'require("fs").utimesSync(process.argv[1], 1000000000.25, 1100000000.5)', file]);
  t.same(last(), { path: '/f', atime: 1000000000250, mtime: 1100000000500 }, 'utimes(atime, mtime): mtime is not a copy of atime');

  await run('touch', ['-m', '-d', '2002-02-03 04:05:06', file], utc);
  t.same(last(), { path: '/f', atime: null, mtime: 1012709106000 }, 'touch -m reaches the handler; atime is UTIME_OMIT (null)');

  await run('touch', ['-a', '-d', '2003-02-03 04:05:06', file], utc);
  t.same(last(), { path: '/f', atime: 1044245106000, mtime: null }, 'touch -a: mtime is UTIME_OMIT (null)');

  const { stdout } = await run('stat', ['-c', '%X %Y', file]);
  t.equal(stdout.trim(), '1044245106 1012709106', 'the times the handler stored show through stat');

  await run('touch', ['-d', '1960-01-01 00:00:00', file], utc);
  t.same(last(), { path: '/f', atime: 0, mtime: 0 }, 'times before 1970 arrive clamped to 0 (they cross as unsigned ms)');

  const before = Date.now();
  await run('touch', [file]);
  const after = Date.now();
  const now = last()!;
  t.ok(now.atime !== null && now.atime >= before - 1000 && now.atime <= after + 1000, `touch: atime is now (${now.atime})`);
  t.ok(now.mtime !== null && now.mtime >= before - 1000 && now.mtime <= after + 1000, `touch: mtime is now (${now.mtime})`);

  // cp keeping timestamps into the mount.
  const src = path.join(await tempDir(t, 'stratus-src-'), 'src');
  await writeFile(src, 'hello\n');
  await utimes(src, new Date('2004-05-06T07:08:09Z'), new Date('2005-06-07T08:09:10Z'));
  await run('cp', ['--preserve=timestamps', src, path.join(mnt, 'copy')]);
  const copied = await run('stat', ['-c', '%X %Y %s', path.join(mnt, 'copy')]);
  t.equal(copied.stdout.trim(), `${Date.parse('2004-05-06T07:08:09Z') / 1000} ${Date.parse('2005-06-07T08:09:10Z') / 1000} 6`);
});

t.test('symlink and readlink cross the patched binding: the target comes first and whole (up to 4095 bytes, multibyte too), and a failing readlink answers its errno', { skip }, async (t) => {
  const { fs, mnt } = await mountMem(t);
  await run('ln', ['-s', '../x/y', path.join(mnt, 'rel')]);
  t.same(fs.symlinks, [{ target: '../x/y', path: '/rel' }], 'symlink(target, path): the target first, as written');
  t.equal((await run('readlink', [path.join(mnt, 'rel')])).stdout, '../x/y\n', 'readlink(1) reads it back');
  const st = await lstat(path.join(mnt, 'rel'));
  t.ok(st.isSymbolicLink(), 'lstat: a symbolic link');
  t.equal(st.size, 6, 'lstat: size is the target length');

  // The longest target Linux takes, in 2-byte characters: fuse-native copies it through a fixed C buffer.
  const longest = 'é'.repeat(2047) + 'x';
  t.equal(Buffer.byteLength(longest), 4095);
  await symlink(longest, path.join(mnt, 'long'));
  t.equal(fs.symlinks.at(-1)?.target, longest, 'a 4095-byte target arrives whole');
  t.equal(await readlink(path.join(mnt, 'long')), longest, 'and reads back byte for byte');
  t.equal((await lstat(path.join(mnt, 'long'))).size, 4095);

  await writeFile(path.join(mnt, 'file'), 'x');
  await t.rejects(readlink(path.join(mnt, 'file')), { code: 'EINVAL' }, 'readlink of a file: EINVAL, no hang');
  await t.rejects(symlink('t', path.join(mnt, 'rel')), { code: 'EEXIST' }, 'symlink onto a taken name: its errno');
});

t.test('big_writes: a 1 MiB write arrives as 128 KiB requests', { skip }, async (t) => {
  const { fs, mnt } = await mountMem(t);
  await run('dd', ['if=/dev/zero', `of=${path.join(mnt, 'big')}`, 'bs=1M', 'count=1', 'status=none']);
  t.same(fs.writes, Array(8).fill(131072), `write sizes: ${fs.writes.join(',')}`);
  t.equal(fs.nodes.get('/big')?.data.length, 1 << 20);
  const { stdout } = await run('stat', ['-c', '%s', path.join(mnt, 'big')]);
  t.equal(stdout.trim(), String(1 << 20));
});

t.test('cleanStaleMount recovers the mountpoint of a SIGKILLed mount', { skip }, async (t) => {
  const mnt = await tempDir(t, 'stratus-stale-');
  const script = [
    'const { mountFuse } = await import(process.argv[1]);',
    'await mountFuse(process.argv[2], {',
    "  getattr: (p, cb) => (p === '/' ? cb(0, { mode: 0o40755, nlink: 2, size: 0 }) : cb(-2)),",
    '  readdir: (p, cb) => cb(0, []),',
    '});',
    "process.stdout.write('mounted\\n');",
    'setInterval(() => {}, 1 << 30);',
  ].join('\n');
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, compiledBinding, mnt], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`child did not mount in 20 s: ${err}`)), 20_000);
    child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      if (out.includes('mounted\n')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`child exited with ${code}: ${err}`));
    });
  });
  const canonical = await canonicalMountpoint(mnt);
  t.match(await mountsAt(canonical), [{ fstype: 'fuse.stratus' }], 'the child mounted');

  child.kill('SIGKILL');
  await exited;
  await t.rejects(stat(mnt), { code: 'ENOTCONN' }, 'a dead mount: Transport endpoint is not connected');
  await t.rejects(checkMountpoint(mnt), { message: /dead FUSE mount/ });

  t.equal(await cleanStaleMount(mnt), true, 'it unmounted the dead mount');
  t.ok((await stat(mnt)).isDirectory());
  t.same(await readdir(mnt), []);
  t.same(await mountsAt(canonical), [], 'no mount left in mountinfo');
  await checkMountpoint(mnt);
  t.equal(await cleanStaleMount(mnt), false, 'nothing to clean the second time');
});

t.test('checkMountpoint explains what is wrong with a mountpoint', async (t) => {
  const dir = await tempDir(t, 'stratus-check-');
  await t.rejects(checkMountpoint(path.join(dir, 'missing')), { message: `mountpoint ${path.join(dir, 'missing')} does not exist` });
  await t.rejects(checkMountpoint(path.join(dir, 'missing', 'deeper')), { message: /does not exist$/ });
  await writeFile(path.join(dir, 'file'), 'x');
  await t.rejects(checkMountpoint(path.join(dir, 'file')), { message: `mountpoint ${path.join(dir, 'file')} is not an empty directory` });
  await t.rejects(checkMountpoint(path.join(dir, 'file', 'below')), { message: /does not exist$/ });
  await mkdir(path.join(dir, 'full'));
  await writeFile(path.join(dir, 'full', 'x'), 'x');
  await t.rejects(checkMountpoint(path.join(dir, 'full')), { message: `mountpoint ${path.join(dir, 'full')} is not an empty directory` });
  await mkdir(path.join(dir, 'empty'));
  await t.resolves(checkMountpoint(path.join(dir, 'empty')));
  t.equal(await cleanStaleMount(path.join(dir, 'empty')), false, 'a plain directory is left alone');
  await t.rejects(unmount(path.join(dir, 'empty')), { message: /is not mounted$/ });
});

t.test('a mountpoint in use is refused, and mountFuse checks before mounting', { skip }, async (t) => {
  const { mnt } = await mountMem(t);
  await t.rejects(checkMountpoint(mnt), { message: `mountpoint ${mnt} is already mounted (fuse.stratus)` });
  t.equal(await cleanStaleMount(mnt), false, 'a live mount is not stale');
  const full = await tempDir(t, 'stratus-full-');
  await writeFile(path.join(full, 'x'), 'x');
  await t.rejects(mountFuse(full, new MemFs().ops()), { message: `mountpoint ${full} is not an empty directory` });
});

t.test('unmount from outside; the owner unmounting afterwards is fine', { skip }, async (t) => {
  const { mnt, handle } = await mountMem(t);
  await run('touch', [path.join(mnt, 'f')]);
  await unmount(mnt);
  t.same(await mountsAt(await canonicalMountpoint(mnt)), []);
  t.same(await readdir(mnt), [], 'the mountpoint is a plain empty directory again');
  await t.resolves(handle.unmount());
  await t.resolves(handle.unmount(), 'twice is fine');
  await t.rejects(unmount(mnt), { message: /is not mounted$/ });
});
