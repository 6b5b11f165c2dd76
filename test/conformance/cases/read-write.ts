import { randomBytes } from 'node:crypto';
import { O_CREAT, O_RDONLY, O_RDWR, O_WRONLY, readFile, readToEnd, writeFile } from '../driver.js';
import type { Case } from '../suite.js';

/** read(2) and write(2) at offsets, at and past the end of the file, with the descriptor's offset. */
export const cases: Case[] = [
  {
    name: 'reads at offsets return exactly the bytes there; at or past EOF they return nothing',
    async run(t, fs) {
      const data = randomBytes(200_000);
      await writeFile(fs, '/f', data);
      for (const phase of ['queued', 'committed']) {
        if (phase === 'committed') await fs.settle();
        const fd = await fs.open('/f', O_RDONLY);
        t.same(await fs.read(fd, 10, 0), data.subarray(0, 10), `${phase}: 10 bytes at 0`);
        t.same(await fs.read(fd, 1000, 123_456), data.subarray(123_456, 124_456), `${phase}: 1000 bytes at 123456`);
        t.same(await fs.read(fd, 1000, data.length - 10), data.subarray(data.length - 10), `${phase}: a read across EOF stops at EOF`);
        t.equal((await fs.read(fd, 100, data.length)).length, 0, `${phase}: a read at EOF returns 0 bytes`);
        t.equal((await fs.read(fd, 100, data.length + 5000)).length, 0, `${phase}: a read past EOF returns 0 bytes`);
        t.ok((await readToEnd(fs, fd, 0)).equals(data), `${phase}: the whole file reads back`);
        await fs.close(fd);
      }
    },
  },
  {
    name: 'reads and writes without a position use and move the descriptor offset',
    async run(t, fs) {
      const fd = await fs.open('/f', O_RDWR | O_CREAT, 0o644);
      await fs.write(fd, Buffer.from('abc'));
      await fs.write(fd, Buffer.from('def'));
      t.same(await fs.read(fd, 10, 0), Buffer.from('abcdef'), 'two writes followed each other');
      await fs.close(fd);
      const r = await fs.open('/f', O_RDONLY);
      t.same(await fs.read(r, 2), Buffer.from('ab'), 'first read from 0');
      t.same(await fs.read(r, 2), Buffer.from('cd'), 'next read from where the first stopped');
      await fs.close(r);
    },
  },
  {
    name: 'a write past EOF leaves a hole that reads as zeros, and sets the size',
    async run(t, fs) {
      await writeFile(fs, '/f', 'head');
      const fd = await fs.open('/f', O_WRONLY);
      await fs.write(fd, Buffer.from('tail'), 100_000);
      t.equal((await fs.fstat(fd)).size, 100_004, 'size is the end of the last write');
      await fs.close(fd);
      const want = Buffer.alloc(100_004);
      want.write('head', 0);
      want.write('tail', 100_000);
      t.ok((await readFile(fs, '/f')).equals(want), 'the gap reads as zeros');
      await fs.settle();
      t.ok((await readFile(fs, '/f')).equals(want), 'also once committed');
    },
  },
  {
    name: 'overwriting the middle of a committed multi-block file changes only those bytes',
    async run(t, fs) {
      const data = randomBytes(1_500_000);
      await writeFile(fs, '/big', data);
      await fs.settle();
      const patch = randomBytes(10_000);
      const fd = await fs.open('/big', O_WRONLY);
      t.equal(await fs.write(fd, patch, 700_000), patch.length, 'the write is whole');
      await fs.close(fd);
      patch.copy(data, 700_000);
      t.ok((await readFile(fs, '/big')).equals(data), 'reads back with the patch');
      t.equal((await fs.stat('/big')).size, data.length, 'size unchanged');
      await fs.settle();
      t.ok((await readFile(fs, '/big')).equals(data), 'also once committed');
    },
  },
  {
    name: 'an empty write changes nothing; a zero-length file reads as empty',
    async run(t, fs) {
      await writeFile(fs, '/f', 'abc');
      const fd = await fs.open('/f', O_WRONLY);
      t.equal(await fs.write(fd, Buffer.alloc(0), 10), 0, 'writes 0 bytes');
      await fs.close(fd);
      t.equal((await fs.stat('/f')).size, 3, 'the size is unchanged (no hole was made)');
      await writeFile(fs, '/empty', '');
      t.same(await readFile(fs, '/empty'), Buffer.alloc(0));
    },
  },
];
