import { fails, isDir, names, O_CREAT, O_RDONLY, O_RDWR, readFile, readToEnd, writeFile } from '../driver.js';
import type { Case } from '../suite.js';

/** rename(2) of files and folders: to a free name, over files, over empty and non-empty folders. */
export const cases: Case[] = [
  {
    name: 'a file renamed to a free name and into another folder keeps its bytes and mode',
    async run(t, fs) {
      await writeFile(fs, '/a', 'content', 0o600);
      await fs.mkdir('/d', 0o755);
      await fs.rename('/a', '/b');
      await fails(t, fs.stat('/a'), 'ENOENT', 'the old name');
      t.same(await readFile(fs, '/b'), Buffer.from('content'), 'the new name has the bytes');
      await fs.rename('/b', '/d/c');
      t.same(await names(fs, '/'), ['d'], 'gone from the first folder');
      t.same(await names(fs, '/d'), ['c'], 'listed in the second');
      t.equal((await fs.stat('/d/c')).mode & 0o7777, 0o600, 'mode kept');
      await fs.settle();
      t.same(await readFile(fs, '/d/c'), Buffer.from('content'), 'once committed too');
    },
  },
  {
    name: 'a file renamed over a file replaces it: one name, the source bytes, mode of the source',
    async run(t, fs) {
      await writeFile(fs, '/src', 'new bytes', 0o600);
      await writeFile(fs, '/dst', 'old bytes, longer', 0o644);
      await fs.settle();
      await fs.rename('/src', '/dst');
      t.same(await names(fs, '/'), ['dst'], 'only the destination name is left');
      t.same(await readFile(fs, '/dst'), Buffer.from('new bytes'), 'with the source content');
      t.equal((await fs.stat('/dst')).size, 9, 'and its size');
      // The editor pattern, with the temp file not committed yet.
      await writeFile(fs, '/dst.tmp', 'saved again');
      await fs.rename('/dst.tmp', '/dst');
      t.same(await names(fs, '/'), ['dst'], 'temp file renamed over: one name');
      t.same(await readFile(fs, '/dst'), Buffer.from('saved again'), 'with the temp content');
      await fs.settle();
      t.same(await readFile(fs, '/dst'), Buffer.from('saved again'), 'also once committed');
    },
  },
  {
    name: 'a reader open on the replaced file keeps reading the old bytes',
    async run(t, fs) {
      await writeFile(fs, '/dst', 'old content');
      await writeFile(fs, '/src', 'new content');
      await fs.settle();
      const r = await fs.open('/dst', O_RDONLY);
      await fs.rename('/src', '/dst');
      t.same(await readToEnd(fs, r, 0), Buffer.from('old content'), 'the open descriptor reads what it opened');
      await fs.close(r);
      t.same(await readFile(fs, '/dst'), Buffer.from('new content'), 'a new open reads the new content');
    },
  },
  {
    name: 'a file open for writing renamed keeps taking writes under its new name',
    async run(t, fs) {
      const fd = await fs.open('/a', O_RDWR | O_CREAT, 0o644);
      await fs.write(fd, Buffer.from('before '), 0);
      await fs.rename('/a', '/b');
      await fs.write(fd, Buffer.from('after'), 7);
      await fs.close(fd);
      t.same(await names(fs, '/'), ['b']);
      t.same(await readFile(fs, '/b'), Buffer.from('before after'), 'both writes under the new name');
      await fs.settle();
      t.same(await readFile(fs, '/b'), Buffer.from('before after'), 'also once committed');
    },
  },
  {
    name: 'a folder renamed moves its whole subtree; over an empty folder it replaces it',
    async run(t, fs) {
      await fs.mkdir('/d', 0o755);
      await fs.mkdir('/d/sub', 0o755);
      await writeFile(fs, '/d/sub/f', 'deep');
      await fs.mkdir('/empty', 0o755);
      await fs.rename('/d', '/e');
      t.same(await names(fs, '/'), ['e', 'empty'], 'renamed');
      t.same(await readFile(fs, '/e/sub/f'), Buffer.from('deep'), 'a grandchild is reachable under the new name');
      await fs.rename('/e', '/empty');
      t.same(await names(fs, '/'), ['empty'], 'over an empty folder: one name left');
      t.ok(isDir(await fs.stat('/empty')), 'a folder');
      t.same(await names(fs, '/empty'), ['sub'], 'holding the moved children');
      t.same(await readFile(fs, '/empty/sub/f'), Buffer.from('deep'));
    },
  },
  {
    name: 'refused renames (folder over a non-empty folder, over a file, into itself; file over a folder) change nothing',
    async run(t, fs) {
      await fs.mkdir('/d', 0o755);
      await writeFile(fs, '/d/x', 'x');
      await fs.mkdir('/full', 0o755);
      await writeFile(fs, '/full/y', 'y');
      await fs.mkdir('/empty', 0o755);
      await writeFile(fs, '/f', 'f');
      await fails(t, fs.rename('/d', '/full'), 'ENOTEMPTY', 'folder over a non-empty folder');
      await fails(t, fs.rename('/d', '/f'), 'ENOTDIR', 'folder over a file');
      await fails(t, fs.rename('/f', '/empty'), 'EISDIR', 'file over an empty folder');
      await fails(t, fs.rename('/f', '/full'), 'EISDIR', 'file over a non-empty folder');
      await fails(t, fs.rename('/d', '/d/inside'), 'EINVAL', 'folder into itself');
      t.same(await names(fs, '/'), ['d', 'empty', 'f', 'full'], 'every name is where it was');
      t.same(await names(fs, '/d'), ['x']);
      t.same(await names(fs, '/full'), ['y']);
      t.same(await readFile(fs, '/f'), Buffer.from('f'));
    },
  },
  {
    name: 'renaming a file onto itself succeeds and changes nothing',
    async run(t, fs) {
      await writeFile(fs, '/f', 'same');
      await fs.rename('/f', '/f');
      t.same(await names(fs, '/'), ['f']);
      t.same(await readFile(fs, '/f'), Buffer.from('same'));
    },
  },
];
