import { NAME_255_UTF8, NAME_256, names, O_CREAT, O_RDONLY, O_WRONLY, readFile, writeFile } from '../driver.js';
import type { Case } from '../suite.js';
import { errorsFixture, refusals } from './errors.js';

const long = `/${NAME_256}`;

/** Names: NAME_MAX (255 bytes of UTF-8) is the limit, ENAMETOOLONG past it, from every call. */
export const cases: Case[] = [
  {
    name: 'a 256-byte name gives ENAMETOOLONG from every call, and nothing changes',
    async run(t, fs) {
      await errorsFixture(fs);
      await refusals(t, fs, [
        ['stat', (fs) => fs.stat(long), 'ENAMETOOLONG'],
        ['open', (fs) => fs.open(long, O_RDONLY), 'ENAMETOOLONG'],
        ['open with O_CREAT', (fs) => fs.open(long, O_WRONLY | O_CREAT, 0o644), 'ENAMETOOLONG'],
        ['mkdir', (fs) => fs.mkdir(long, 0o755), 'ENAMETOOLONG'],
        ['unlink', (fs) => fs.unlink(long), 'ENAMETOOLONG'],
        ['rmdir', (fs) => fs.rmdir(long), 'ENAMETOOLONG'],
        ['readdir', (fs) => fs.readdir(long), 'ENAMETOOLONG'],
        ['rename from it', (fs) => fs.rename(long, '/x'), 'ENAMETOOLONG'],
        ['rename to it', (fs) => fs.rename('/file', long), 'ENAMETOOLONG'],
        ['rename of a folder to it', (fs) => fs.rename('/empty', long), 'ENAMETOOLONG'],
        ['truncate', (fs) => fs.truncate(long, 0), 'ENAMETOOLONG'],
        ['chmod', (fs) => fs.chmod(long, 0o600), 'ENAMETOOLONG'],
        ['utimes', (fs) => fs.utimes(long, Date.now(), Date.now()), 'ENAMETOOLONG'],
        ['stat of a path through it', (fs) => fs.stat(`${long}/x`), 'ENAMETOOLONG'],
        ['create in a folder of a name that long', (fs) => fs.open(`${long}/x`, O_WRONLY | O_CREAT, 0o644), 'ENAMETOOLONG'],
      ]);
    },
  },
  {
    name: 'a new name holding U+FFFD (what bytes that are not UTF-8 become on the way in) is EILSEQ, and nothing changes',
    async run(t, fs) {
      await errorsFixture(fs);
      const bad = '/bad-\uFFFD';
      await refusals(t, fs, [
        ['create', (fs) => fs.open(bad, O_WRONLY | O_CREAT, 0o644), 'EILSEQ'],
        ['mkdir', (fs) => fs.mkdir(bad, 0o755), 'EILSEQ'],
        ['rename to it', (fs) => fs.rename('/file', bad), 'EILSEQ'],
      ]);
    },
  },
  {
    name: 'a path fails at its first bad component: ENOENT before a long name, ENOTDIR through a file',
    async run(t, fs) {
      await errorsFixture(fs);
      await refusals(t, fs, [
        ['stat of a long name in a missing folder', (fs) => fs.stat(`/missing${long}`), 'ENOENT'],
        ['stat of a long name under a file', (fs) => fs.stat(`/file${long}`), 'ENOTDIR'],
        ['stat through a file', (fs) => fs.stat('/file/x'), 'ENOTDIR'],
        ['open through a file', (fs) => fs.open('/file/x', O_RDONLY), 'ENOTDIR'],
        ['unlink through a file', (fs) => fs.unlink('/file/x'), 'ENOTDIR'],
      ]);
    },
  },
  {
    name: 'a name of exactly 255 bytes (85 three-byte characters) works for files and folders, and is committed',
    async run(t, fs) {
      const file = NAME_255_UTF8;
      const dir = `dir ${'€'.repeat(83)}`; // 4 + 249 = 253 bytes
      await writeFile(fs, `/${file}`, 'longest');
      await fs.mkdir(`/${dir}`, 0o755);
      t.same(await names(fs, '/'), [dir, file].sort(), 'both listed');
      await fs.rename(`/${file}`, `/${dir}/${file}`);
      await fs.settle();
      t.same(await names(fs, `/${dir}`), [file], 'moved into the folder');
      t.same(await readFile(fs, `/${dir}/${file}`), Buffer.from('longest'), 'and reads back there once committed');
    },
  },
];
