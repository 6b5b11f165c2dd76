import { eventually } from '../../helpers/drive.js';
import { fails, names, O_CREAT, O_RDONLY, O_RDWR, readToEnd, writeFile } from '../driver.js';
import type { Case } from '../suite.js';

/**
 * Names libfuse's high-level API gives a file unlinked while open (it renames it to
 * .fuse_hiddenNNN and removes it at the last close, see README): left out where a case checks
 * that the unlinked name is gone while a descriptor is still open.
 */
const visible = (list: string[]) => list.filter((n) => !/^\.fuse_hidden[0-9a-f]+$/.test(n));

/** The folder's listing once the kernel's asynchronous RELEASE of the last close has been handled. */
const settledListing = (fs: Parameters<Case['run']>[1], dir: string, want: string[]) =>
  eventually(`listing of ${dir} to be ${JSON.stringify(want)}`, () => names(fs, dir), (got) => JSON.stringify(got) === JSON.stringify(want), 5_000);

/** unlink(2) and rmdir(2), also of files that are open. */
export const cases: Case[] = [
  {
    name: 'unlink removes the name; rmdir removes an empty folder; both are gone once committed',
    async run(t, fs) {
      await writeFile(fs, '/f', 'x');
      await fs.mkdir('/d', 0o755);
      await fs.settle();
      await fs.unlink('/f');
      await fs.rmdir('/d');
      await fails(t, fs.stat('/f'), 'ENOENT', 'stat of the unlinked file');
      await fails(t, fs.stat('/d'), 'ENOENT', 'stat of the removed folder');
      t.same(await names(fs, '/'), [], 'nothing listed');
      await fs.settle();
      t.same(await names(fs, '/'), [], 'still nothing after the drive settled');
    },
  },
  {
    name: 'a file unlinked while open for reading stays readable through its descriptor',
    async run(t, fs) {
      const data = Buffer.from('read me after unlink');
      await writeFile(fs, '/f', data);
      await fs.settle();
      const fd = await fs.open('/f', O_RDONLY);
      await fs.unlink('/f');
      await fails(t, fs.stat('/f'), 'ENOENT', 'the name is gone at once');
      t.same(visible(await names(fs, '/')), [], 'and not listed');
      t.same(await readToEnd(fs, fd, 0), data, 'the descriptor still reads every byte');
      await fs.close(fd);
      t.same(await settledListing(fs, '/', []), [], 'after the last close nothing is left');
    },
  },
  {
    name: 'a file unlinked while open for writing takes writes and reads until closed, and does not come back',
    async run(t, fs) {
      const fd = await fs.open('/f', O_RDWR | O_CREAT, 0o644);
      await fs.write(fd, Buffer.from('first'), 0);
      await fs.unlink('/f');
      await fails(t, fs.stat('/f'), 'ENOENT', 'the name is gone at once');
      t.equal(await fs.write(fd, Buffer.from(' second'), 5), 7, 'a write after the unlink succeeds');
      t.same(await readToEnd(fs, fd, 0), Buffer.from('first second'), 'and reads back through the descriptor');
      await fs.close(fd);
      t.same(await settledListing(fs, '/', []), [], 'after the close nothing is left');
      await fs.settle();
      t.same(await names(fs, '/'), [], 'the close did not bring the file back');
    },
  },
  {
    name: 'a folder whose file was unlinked while open is empty at once: rmdir succeeds (rm -rf right after writing)',
    async run(t, fs) {
      await fs.mkdir('/d', 0o755);
      await writeFile(fs, '/d/f', 'still here');
      const fd = await fs.open('/d/f', O_RDONLY);
      await fs.unlink('/d/f');
      t.same(await names(fs, '/d'), [], 'nothing listed, not even a hidden name');
      t.same(await readToEnd(fs, fd, 0), Buffer.from('still here'), 'the descriptor still reads every byte');
      t.equal((await fs.fstat(fd)).size, 10, 'and fstat answers it');
      // (Reads after the folder is gone fail on the mount: libfuse's path-based API cannot name the file any more; see README.)
      await fs.rmdir('/d');
      await fails(t, fs.stat('/d'), 'ENOENT', 'the folder is gone');
      await fs.close(fd);
      await fs.settle();
      t.same(await names(fs, '/'), [], 'nothing comes back');
    },
  },
  {
    name: 'rmdir of a folder holding a file (open or not) fails with ENOTEMPTY and keeps it',
    async run(t, fs) {
      await fs.mkdir('/d', 0o755);
      await writeFile(fs, '/d/f', 'kept');
      const fd = await fs.open('/d/f', O_RDONLY);
      await fails(t, fs.rmdir('/d'), 'ENOTEMPTY', 'rmdir with an open file inside');
      await fs.close(fd);
      await fails(t, fs.rmdir('/d'), 'ENOTEMPTY', 'rmdir with a closed file inside');
      t.same(await names(fs, '/d'), ['f'], 'the file is still there');
      await fs.unlink('/d/f');
      await fs.rmdir('/d');
      t.same(await names(fs, '/'), [], 'empty: removed');
    },
  },
];
