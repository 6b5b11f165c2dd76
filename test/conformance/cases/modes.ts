import { isDir, isFile, names, O_CREAT, O_WRONLY, S_IFCHR, S_IFDIR, S_IFIFO, S_IFMT, S_IFREG, writeFile } from '../driver.js';
import type { Case } from '../suite.js';
import { errorsFixture, refusals } from './errors.js';

/** Permission bits and owners. Modes are within 0755 so the caller's umask (022) leaves them alone. */
export const cases: Case[] = [
  {
    name: 'create and mkdir take the mode asked for; stat shows the type bits',
    async run(t, fs) {
      const fd = await fs.open('/f', O_WRONLY | O_CREAT, 0o750);
      await fs.close(fd);
      await fs.mkdir('/d', 0o710);
      const f = await fs.stat('/f');
      const d = await fs.stat('/d');
      t.equal(f.mode & S_IFMT, S_IFREG, 'a file is S_IFREG');
      t.equal(f.mode & 0o7777, 0o750, 'file mode 0750');
      t.equal(d.mode & S_IFMT, S_IFDIR, 'a folder is S_IFDIR');
      t.equal(d.mode & 0o7777, 0o710, 'folder mode 0710');
      await fs.settle();
      t.equal((await fs.stat('/f')).mode & 0o7777, 0o750, 'file mode once committed');
      t.equal((await fs.stat('/d')).mode & 0o7777, 0o710, 'folder mode once committed');
    },
  },
  {
    name: 'chmod changes the permission bits of files (new, queued, committed) and folders, and keeps the type',
    async run(t, fs) {
      const fd = await fs.open('/f', O_WRONLY | O_CREAT, 0o644);
      await fs.chmod('/f', 0o600);
      t.equal((await fs.fstat(fd)).mode & 0o7777, 0o600, 'while open for writing');
      await fs.close(fd);
      await fs.chmod('/f', 0o755);
      t.equal((await fs.stat('/f')).mode, S_IFREG | 0o755, 'after close (queued)');
      await fs.settle();
      await fs.chmod('/f', 0o640);
      t.equal((await fs.stat('/f')).mode, S_IFREG | 0o640, 'committed');
      await fs.mkdir('/d', 0o755);
      await fs.chmod('/d', 0o700);
      const d = await fs.stat('/d');
      t.ok(isDir(d), 'still a folder');
      t.equal(d.mode & 0o7777, 0o700, 'folder 0700');
      await fs.settle();
      t.equal((await fs.stat('/f')).mode & 0o7777, 0o640, 'file mode once settled');
    },
  },
  {
    name: 'every file and folder belongs to the mounting user',
    async run(t, fs) {
      await writeFile(fs, '/f', 'x');
      await fs.mkdir('/d', 0o755);
      for (const p of ['/', '/f', '/d']) {
        const s = await fs.stat(p);
        t.same({ uid: s.uid, gid: s.gid }, fs.owner, `${p}: owner and group`);
      }
    },
  },
  {
    name: 'chown to another owner or group is EPERM (a single-owner file system); to the owner, or -1, succeeds',
    async run(t, fs) {
      await errorsFixture(fs);
      const { uid, gid } = fs.owner;
      await refusals(t, fs, [
        ['chown of a file to another user', (fs) => fs.chown('/file', uid + 1000, -1), 'EPERM'],
        ['chown of a file to another group', (fs) => fs.chown('/file', -1, gid + 1000), 'EPERM'],
        ['chown of a folder to another user and group', (fs) => fs.chown('/full', uid + 1000, gid + 1000), 'EPERM'],
        ['chown of a missing file', (fs) => fs.chown('/missing', uid, gid), 'ENOENT'],
      ]);
      await fs.chown('/file', uid, gid);
      await fs.chown('/file', -1, -1);
      await fs.chown('/full', uid, -1);
      const s = await fs.stat('/file');
      t.same({ uid: s.uid, gid: s.gid }, fs.owner, 'the owner is what it was');
    },
  },
  {
    name: 'FIFOs, sockets and device nodes are refused with EPERM; mknod of a regular file makes an empty file',
    async run(t, fs) {
      await errorsFixture(fs);
      await refusals(t, fs, [
        ['mkfifo', (fs) => fs.mknod('/fifo', S_IFIFO | 0o644), 'EPERM'],
        ['bind of a Unix socket', (fs) => fs.bindSocket('/socket'), 'EPERM'],
        ['mknod of a character device', (fs) => fs.mknod('/null', S_IFCHR | 0o644, (1 << 8) | 3), 'EPERM'],
        ['mkfifo over an existing name', (fs) => fs.mknod('/file', S_IFIFO | 0o644), 'EEXIST'],
      ]);
      await fs.mknod('/regular', S_IFREG | 0o640);
      const st = await fs.stat('/regular');
      t.ok(isFile(st), 'mknod S_IFREG: a regular file');
      t.equal(st.size, 0, 'empty');
      t.equal(st.mode & 0o7777, 0o640, 'with its mode');
      t.same(await names(fs, '/'), ['empty', 'file', 'full', 'regular'], 'nothing else was made');
    },
  },
];
