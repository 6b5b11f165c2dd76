import type { Driver } from '../driver.js';
import { errnoOf, names, O_CREAT, O_RDONLY, O_RDWR, O_WRONLY, readFile, writeFile } from '../driver.js';
import type { Case } from '../suite.js';

/** A call expected to fail, and the errno it must fail with. */
export type Refusal = [what: string, call: (fs: Driver) => Promise<unknown>, errno: string];

/**
 * Runs each refused call in the folder `errorsFixture` made and checks its errno, and that it
 * changed nothing: not the server's state, not the folder's listing.
 */
export async function refusals(t: Parameters<Case['run']>[0], fs: Driver, table: Refusal[]): Promise<void> {
  await fs.settle();
  const listing = JSON.stringify({ root: await names(fs, '/'), full: await names(fs, '/full'), empty: await names(fs, '/empty') });
  for (const [what, call, code] of table) {
    const before = await fs.serverState();
    t.equal(await errnoOf(call(fs)), code, `${what} → ${code}`);
    t.equal(await fs.serverState(), before, `${what}: the server is unchanged`);
  }
  await fs.settle();
  t.equal(JSON.stringify({ root: await names(fs, '/'), full: await names(fs, '/full'), empty: await names(fs, '/empty') }), listing, 'every folder lists what it did');
  t.same(await readFile(fs, '/file'), Buffer.from('file'), 'the file kept its bytes');
}

/** /empty (a folder), /full (a folder with inside.txt), /file (a file holding "file"). */
export async function errorsFixture(fs: Driver): Promise<void> {
  await fs.mkdir('/empty', 0o755);
  await fs.mkdir('/full', 0o755);
  await writeFile(fs, '/full/inside.txt', 'inside');
  await writeFile(fs, '/file', 'file');
}

/** errno of every refused call: the table the in-process and the mount tests used to keep apart. */
export const cases: Case[] = [
  {
    name: 'ENOENT for every call on a missing name or under a missing folder, and nothing changes',
    async run(t, fs) {
      await errorsFixture(fs);
      await refusals(t, fs, [
        ['stat of a missing path', (fs) => fs.stat('/missing'), 'ENOENT'],
        ['open of a missing file', (fs) => fs.open('/missing', O_RDONLY), 'ENOENT'],
        ['open for writing of a missing file without O_CREAT', (fs) => fs.open('/missing', O_WRONLY), 'ENOENT'],
        ['readdir of a missing folder', (fs) => fs.readdir('/missing'), 'ENOENT'],
        ['unlink of a missing file', (fs) => fs.unlink('/missing'), 'ENOENT'],
        ['rmdir of a missing folder', (fs) => fs.rmdir('/missing'), 'ENOENT'],
        ['rename of a missing source', (fs) => fs.rename('/missing', '/x'), 'ENOENT'],
        ['rename into a missing folder', (fs) => fs.rename('/file', '/missing/x'), 'ENOENT'],
        ['create in a missing folder', (fs) => fs.open('/missing/x', O_WRONLY | O_CREAT), 'ENOENT'],
        ['mkdir in a missing folder', (fs) => fs.mkdir('/missing/x', 0o755), 'ENOENT'],
        ['truncate of a missing file', (fs) => fs.truncate('/missing', 0), 'ENOENT'],
        ['utimes of a missing file', (fs) => fs.utimes('/missing', Date.now(), Date.now()), 'ENOENT'],
        ['chmod of a missing file', (fs) => fs.chmod('/missing', 0o600), 'ENOENT'],
      ]);
    },
  },
  {
    name: 'EEXIST, ENOTEMPTY, EISDIR and ENOTDIR where POSIX says, and nothing changes',
    async run(t, fs) {
      await errorsFixture(fs);
      await refusals(t, fs, [
        ['mkdir over a folder', (fs) => fs.mkdir('/empty', 0o755), 'EEXIST'],
        ['mkdir over a file', (fs) => fs.mkdir('/file', 0o755), 'EEXIST'],
        ['rmdir of a non-empty folder', (fs) => fs.rmdir('/full'), 'ENOTEMPTY'],
        ['rename of a folder over a non-empty folder', (fs) => fs.rename('/empty', '/full'), 'ENOTEMPTY'],
        ['open of a folder for writing', (fs) => fs.open('/full', O_WRONLY), 'EISDIR'],
        ['open of a folder for reading and writing', (fs) => fs.open('/full', O_RDWR), 'EISDIR'],
        ['reading a folder as a file', (fs) => readFile(fs, '/full'), 'EISDIR'],
        ['O_CREAT on a folder', (fs) => fs.open('/empty', O_WRONLY | O_CREAT), 'EISDIR'],
        ['unlink of a folder', (fs) => fs.unlink('/empty'), 'EISDIR'],
        ['truncate of a folder', (fs) => fs.truncate('/empty', 0), 'EISDIR'],
        ['rename of a file over a folder', (fs) => fs.rename('/file', '/empty'), 'EISDIR'],
        ['rmdir of a file', (fs) => fs.rmdir('/file'), 'ENOTDIR'],
        ['readdir of a file', (fs) => fs.readdir('/file'), 'ENOTDIR'],
        ['create under a file', (fs) => fs.open('/file/x', O_WRONLY | O_CREAT), 'ENOTDIR'],
        ['mkdir under a file', (fs) => fs.mkdir('/file/x', 0o755), 'ENOTDIR'],
        ['rename of a folder over a file', (fs) => fs.rename('/empty', '/file'), 'ENOTDIR'],
        ['rename of a file under a file', (fs) => fs.rename('/full/inside.txt', '/file/x'), 'ENOTDIR'],
        ['rename of a folder into itself', (fs) => fs.rename('/full', '/full/sub'), 'EINVAL'],
      ]);
    },
  },
  {
    name: 'names the server would refuse (not in Unicode NFC) are refused with EINVAL at once',
    async run(t, fs) {
      await errorsFixture(fs);
      const nfd = 'e\u0301.txt';
      await refusals(t, fs, [
        ['create of a name not in NFC', (fs) => fs.open(`/${nfd}`, O_WRONLY | O_CREAT), 'EINVAL'],
        ['mkdir of a name not in NFC', (fs) => fs.mkdir(`/${nfd}`, 0o755), 'EINVAL'],
        ['rename to a name not in NFC', (fs) => fs.rename('/file', `/${nfd}`), 'EINVAL'],
      ]);
    },
  },
];
