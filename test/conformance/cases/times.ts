import { clockPast, O_RDONLY, O_TRUNC, O_WRONLY, readFile, writeFile, type Driver, type Stat } from '../driver.js';
import type { Case } from '../suite.js';

/** Whole seconds in the past (2001-09-09, 2004-01-10), so a kept time is never "now". */
const PAST = 1_000_000_000_000;
const PAST2 = 1_073_741_824_000;

/**
 * Runs `op` once the clock has passed `after` (the last ctime seen) and returns the stat that
 * follows with `since`, the time just before `op`: a time taken by `op` is >= since > after.
 */
async function timed(fs: Driver, path: string, after: number, op: () => Promise<unknown>): Promise<{ s: Stat; since: number }> {
  const since = await clockPast(after);
  await op();
  return { s: await fs.stat(path), since };
}

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
  {
    name: 'ctime moves with every change (chmod, chown, rename, utimes, write, truncate); it is not the mtime',
    async run(t, fs) {
      await writeFile(fs, '/f', 'x');
      const start = Date.now();
      await fs.utimes('/f', PAST, PAST);
      let s = await fs.stat('/f');
      t.equal(s.mtimeMs, PAST, 'utimes set the mtime into the past');
      t.ok(s.ctimeMs >= start, `and the ctime to now (${s.ctimeMs} >= ${start}), not to the mtime`);
      const steps: [string, string, () => Promise<unknown>, boolean][] = [
        ['chmod', '/f', () => fs.chmod('/f', 0o600), false],
        ['chown to the owner', '/f', () => fs.chown('/f', fs.owner.uid, fs.owner.gid), false],
        ['rename', '/g', () => fs.rename('/f', '/g'), false],
        ['utimes', '/g', () => fs.utimes('/g', PAST2, PAST2), false],
        ['a write', '/g', async () => {
          const fd = await fs.open('/g', O_WRONLY);
          await fs.write(fd, Buffer.from('yz'), 1);
          await fs.close(fd);
        }, true],
        ['truncate', '/g', () => fs.truncate('/g', 1), true],
      ];
      for (const [what, path, op, movesMtime] of steps) {
        const before = s;
        let since: number;
        ({ s, since } = await timed(fs, path, before.ctimeMs, op));
        t.ok(s.ctimeMs >= since, `${what}: ctime moved to now (${s.ctimeMs} >= ${since})`);
        if (what === 'utimes') t.equal(s.mtimeMs, PAST2, `${what}: mtime as set`);
        else if (movesMtime) t.ok(s.mtimeMs >= since, `${what}: mtime moved too`);
        else t.equal(s.mtimeMs, before.mtimeMs, `${what}: mtime unchanged`);
      }
      const r = await fs.open('/g', O_RDONLY);
      await fs.read(r, 10, 0);
      await fs.close(r);
      t.equal((await fs.stat('/g')).ctimeMs, s.ctimeMs, 'a read does not move the ctime');
    },
  },
  {
    name: "a folder's mtime and ctime move when an entry is added, removed or renamed in it, not when a file in it is written",
    async run(t, fs) {
      await fs.mkdir('/d', 0o755);
      await fs.mkdir('/e', 0o755);
      const steps: [string, string[], () => Promise<unknown>][] = [
        ['a file created in it', ['/d'], () => writeFile(fs, '/d/a', 'a')],
        ['a folder made in it', ['/d'], () => fs.mkdir('/d/sub', 0o755)],
        ['a file renamed in it', ['/d'], () => fs.rename('/d/a', '/d/b')],
        ['a file moved to another folder (both change)', ['/d', '/e'], () => fs.rename('/d/b', '/e/b')],
        ['a folder removed from it', ['/d'], () => fs.rmdir('/d/sub')],
        ['a file unlinked in it', ['/e'], () => fs.unlink('/e/b')],
      ];
      for (const [what, dirs, op] of steps) {
        for (const d of dirs) await fs.utimes(d, PAST, PAST);
        const since = await clockPast(Math.max(...(await Promise.all(dirs.map(async (d) => (await fs.stat(d)).ctimeMs)))));
        await op();
        for (const d of dirs) {
          const s = await fs.stat(d);
          t.ok(s.mtimeMs >= since, `${what}: ${d} mtime moved to now (${s.mtimeMs} >= ${since})`);
          t.ok(s.ctimeMs >= since, `${what}: ${d} ctime too`);
        }
      }
      await writeFile(fs, '/d/kept', 'first');
      await fs.utimes('/d', PAST, PAST);
      await writeFile(fs, '/d/kept', 'rewritten in place');
      t.equal((await fs.stat('/d')).mtimeMs, PAST, "writing a file in it (O_TRUNC, write) leaves the folder's mtime");
      await fs.settle();
      t.equal((await fs.stat('/d')).mtimeMs, PAST, 'also once committed');
    },
  },
  {
    name: 'the atime is kept: utimensat with only an atime (touch -a) sets it and leaves the mtime; reads and writes do not move it',
    async run(t, fs) {
      await writeFile(fs, '/f', 'x');
      await fs.utimes('/f', PAST, PAST2);
      let s = await fs.stat('/f');
      t.same([s.atimeMs, s.mtimeMs], [PAST, PAST2], 'utimes with both: each as given');
      await fs.utimes('/f', PAST2 + 1000, null);
      s = await fs.stat('/f');
      t.same([s.atimeMs, s.mtimeMs], [PAST2 + 1000, PAST2], 'touch -a -d: the atime, the mtime left alone');
      await fs.utimes('/f', null, PAST);
      s = await fs.stat('/f');
      t.same([s.atimeMs, s.mtimeMs], [PAST2 + 1000, PAST], 'touch -m -d: the mtime, the atime left alone');
      await readFile(fs, '/f');
      t.equal((await fs.stat('/f')).atimeMs, PAST2 + 1000, 'a read does not move it (noatime)');
      const fd = await fs.open('/f', O_WRONLY);
      await fs.write(fd, Buffer.from('y'), 0);
      await fs.close(fd);
      t.equal((await fs.stat('/f')).atimeMs, PAST2 + 1000, 'nor does a write');
      await fs.settle();
      t.equal((await fs.stat('/f')).atimeMs, PAST2 + 1000, 'nor the commit');
      await fs.mkdir('/d', 0o755);
      await fs.utimes('/d', PAST, null);
      t.equal((await fs.stat('/d')).atimeMs, PAST, 'a folder keeps its atime too');
    },
  },
];
