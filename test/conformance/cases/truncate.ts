import { randomBytes } from 'node:crypto';
import { O_CREAT, O_RDWR, O_WRONLY, readFile, readToEnd, writeFile, type Driver } from '../driver.js';
import type { Case } from '../suite.js';
import { errorsFixture, refusals } from './errors.js';

/** Far past any file the drive can commit (and past ext4's largest file). */
const HUGE = 999_999_999_999_999;

/** Runs `fn` on a descriptor of /file open for writing, closing it after. */
async function withWriter<T>(fs: Driver, fn: (fd: number) => Promise<T>): Promise<T> {
  const fd = await fs.open('/file', O_WRONLY);
  try {
    return await fn(fd);
  } finally {
    await fs.close(fd);
  }
}

/** truncate(2) and ftruncate(2): down, up (a hole of zeros), to the same size, to 0. */
export const cases: Case[] = [
  {
    name: 'truncate by path shrinks and grows a committed file; grown bytes read as zeros',
    async run(t, fs) {
      const data = randomBytes(300_000);
      await writeFile(fs, '/f', data);
      await fs.settle();
      await fs.truncate('/f', 1000);
      t.equal((await fs.stat('/f')).size, 1000, 'shrunk to 1000');
      t.ok((await readFile(fs, '/f')).equals(data.subarray(0, 1000)), 'the first 1000 bytes stay');
      await fs.truncate('/f', 5000);
      t.equal((await fs.stat('/f')).size, 5000, 'grown to 5000');
      t.ok((await readFile(fs, '/f')).equals(Buffer.concat([data.subarray(0, 1000), Buffer.alloc(4000)])), 'what was cut off does not come back: zeros');
      await fs.settle();
      t.equal((await fs.stat('/f')).size, 5000, 'committed at 5000');
      t.ok((await readFile(fs, '/f')).equals(Buffer.concat([data.subarray(0, 1000), Buffer.alloc(4000)])), 'and reads the same');
    },
  },
  {
    name: 'ftruncate on an open descriptor, between writes',
    async run(t, fs) {
      const fd = await fs.open('/f', O_RDWR | O_CREAT, 0o644);
      await fs.write(fd, Buffer.from('0123456789'), 0);
      await fs.ftruncate(fd, 4);
      t.equal((await fs.fstat(fd)).size, 4, 'fstat shows the cut size');
      t.same(await readToEnd(fs, fd, 0), Buffer.from('0123'), 'the descriptor reads the cut content');
      await fs.write(fd, Buffer.from('X'), 6);
      t.same(await readToEnd(fs, fd, 0), Buffer.from('0123\0\0X'), 'a write past the cut leaves zeros, not the old bytes');
      await fs.ftruncate(fd, 0);
      t.equal((await fs.fstat(fd)).size, 0, 'to 0');
      await fs.write(fd, Buffer.from('end'), 0);
      await fs.close(fd);
      t.same(await readFile(fs, '/f'), Buffer.from('end'));
    },
  },
  {
    name: 'truncate to the current size and to 0',
    async run(t, fs) {
      await writeFile(fs, '/f', 'same');
      await fs.truncate('/f', 4);
      t.same(await readFile(fs, '/f'), Buffer.from('same'), 'same size: unchanged');
      await fs.truncate('/f', 0);
      t.equal((await fs.stat('/f')).size, 0, 'to 0');
      t.same(await readFile(fs, '/f'), Buffer.alloc(0), 'empty');
    },
  },
  {
    name: 'a size the drive could never commit gives EFBIG (truncate, ftruncate, a write that far), and nothing changes',
    async run(t, fs) {
      await errorsFixture(fs);
      await refusals(t, fs, [
        ['truncate to 999999999999999 bytes', (fs) => fs.truncate('/file', HUGE), 'EFBIG'],
        ['ftruncate to 999999999999999 bytes', (fs) => withWriter(fs, (fd) => fs.ftruncate(fd, HUGE)), 'EFBIG'],
        ['a write at offset 999999999999999', (fs) => withWriter(fs, (fd) => fs.write(fd, Buffer.from('x'), HUGE)), 'EFBIG'],
      ]);
      t.equal((await fs.stat('/file')).size, 4, 'the size is as it was');
    },
  },
];
