import { O_RDONLY, O_TRUNC, O_WRONLY, readFile, writeFile } from '../driver.js';
import type { Case } from '../suite.js';

/** Whole seconds in the past (2001-09-09, 2004-01-10), so a kept time is never "now". */
const PAST = 1_000_000_000_000;
const PAST2 = 1_073_741_824_000;

/** Modification, access and change times. */
export const cases: Case[] = [
  {
    name: 'a write sets the mtime to the time of the write; reading and opening without writing do not',
    async run(t, fs) {
      await writeFile(fs, '/f', 'first');
      await fs.utimes('/f', PAST, PAST);
      const fd = await fs.open('/f', O_WRONLY);
      await fs.close(fd);
      t.equal((await fs.stat('/f')).mtimeMs, PAST, 'open for writing and close without a write: mtime unchanged');
      await readFile(fs, '/f');
      t.equal((await fs.stat('/f')).mtimeMs, PAST, 'a read: mtime unchanged');
      const before = Date.now();
      const w = await fs.open('/f', O_WRONLY);
      await fs.write(w, Buffer.from('second'), 0);
      const during = (await fs.fstat(w)).mtimeMs;
      await fs.close(w);
      const after = Date.now();
      t.ok(during >= before && during <= after, `the write set mtime to now (${during} in [${before}, ${after}])`);
      t.equal((await fs.stat('/f')).mtimeMs, during, 'close keeps it');
      await fs.settle();
      t.equal((await fs.stat('/f')).mtimeMs, during, 'and so does the commit');
    },
  },
  {
    name: 'utimes sets the mtime exactly, on files (open, queued, committed) and folders',
    async run(t, fs) {
      await writeFile(fs, '/f', 'x');
      await fs.utimes('/f', PAST, PAST);
      t.equal((await fs.stat('/f')).mtimeMs, PAST, 'a just-written file');
      await fs.settle();
      await fs.utimes('/f', PAST2, PAST2);
      t.equal((await fs.stat('/f')).mtimeMs, PAST2, 'a committed file');
      const fd = await fs.open('/f', O_WRONLY);
      await fs.write(fd, Buffer.from('y'), 1);
      await fs.utimes('/f', PAST, PAST);
      await fs.close(fd);
      t.equal((await fs.stat('/f')).mtimeMs, PAST, 'set while open for writing, after the last write: kept at close');
      await fs.mkdir('/d', 0o755);
      await fs.utimes('/d', PAST2, PAST2);
      t.equal((await fs.stat('/d')).mtimeMs, PAST2, 'a folder');
      await fs.settle();
      t.equal((await fs.stat('/f')).mtimeMs, PAST, 'the file once committed');
      t.equal((await fs.stat('/d')).mtimeMs, PAST2, 'the folder once committed');
    },
  },
  {
    name: 'truncate and O_TRUNC set the mtime to now',
    async run(t, fs) {
      await writeFile(fs, '/f', '0123456789');
      await fs.utimes('/f', PAST, PAST);
      let before = Date.now();
      await fs.truncate('/f', 3);
      let m = (await fs.stat('/f')).mtimeMs;
      t.ok(m >= before && m <= Date.now(), 'truncate by path');
      await fs.utimes('/f', PAST, PAST);
      before = Date.now();
      const fd = await fs.open('/f', O_WRONLY | O_TRUNC);
      await fs.close(fd);
      m = (await fs.stat('/f')).mtimeMs;
      t.ok(m >= before && m <= Date.now(), `open with O_TRUNC (${m})`);
    },
  },
  {
    name: 'chmod and rename do not change the mtime',
    async run(t, fs) {
      await writeFile(fs, '/f', 'x');
      await fs.utimes('/f', PAST, PAST);
      await fs.chmod('/f', 0o600);
      t.equal((await fs.stat('/f')).mtimeMs, PAST, 'chmod');
      await fs.rename('/f', '/g');
      t.equal((await fs.stat('/g')).mtimeMs, PAST, 'rename');
      const r = await fs.open('/g', O_RDONLY);
      await fs.close(r);
      t.equal((await fs.stat('/g')).mtimeMs, PAST, 'open for reading');
    },
  },
];
