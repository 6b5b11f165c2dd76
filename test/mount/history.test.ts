import crypto from 'node:crypto';
import { constants as fsc } from 'node:fs';
import t, { type Test } from 'tap';
import { FIRST_VIRTUAL_INO } from '../../mount/history/virtual-inodes.js';
import type { Vfs } from '../../mount/vfs/vfs.js';
import { startTestBackend, type TestBackend, type TestUser } from '../helpers/backend.js';
import { remoteNode } from '../helpers/drive.js';
import { drained, fails, readAll, readFh, SMALL_CHUNKING, switchableDevice, writeAll, type Device } from '../helpers/vfs.js';

/**
 * The drive's virtual tree `.stratus/` (DESIGN §6) without FUSE: the Vfs over a real in-process
 * server. `.stratus/versions/PATH/` lists every version of the file at PATH, each readable with
 * that version's bytes; `.stratus/at/TIME/` is the whole tree as it was at TIME; the root never
 * lists `.stratus`; everything in it is read-only (EROFS) and a refused change changes nothing;
 * what was never fetched is EIO when the server is away.
 *
 * Times: a time is recorded once the drive's queue has drained (the server has every change) and
 * the next change starts only after the clock has passed it (the journal's times are ms of the
 * server's clock: this process's).
 */

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

let backend: TestBackend;
let users = 0;

t.before(async () => {
  backend = await startTestBackend('sqlite', { chunking: SMALL_CHUNKING });
});
t.teardown(() => backend?.close());

async function newDevice(t: Test): Promise<{ user: TestUser; dev: Device; deviceName: string }> {
  const user = await backend.addUser(`history${++users}`);
  const dev = await switchableDevice(t, backend.url, user.token, 'laptop');
  return { user, dev, deviceName: (await user.client.whoami()).device.name };
}

/** The present time, once the clock has moved past it: a change made after this returns is later than it. */
async function recordTime(): Promise<number> {
  const at = Date.now();
  while (Date.now() <= at) await new Promise((resolve) => setImmediate(resolve));
  return at;
}

const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

/** Everything under a folder of the Vfs: { relative path: type, size and sha256 / link target }. */
async function walk(vfs: Vfs, dir: string, rel = ''): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const { names, stats } = await vfs.readdir(dir);
  for (let i = 0; i < names.length; i++) {
    const p = `${dir === '/' ? '' : dir}/${names[i]}`;
    const r = `${rel}${names[i]}`;
    const type = stats[i]!.mode & S_IFMT;
    if (type === S_IFDIR) {
      out[`${r}/`] = '<dir>';
      Object.assign(out, await walk(vfs, p, `${r}/`));
    } else if (type === S_IFLNK) out[r] = `<link> ${await vfs.readlink(p)}`;
    else {
      const bytes = await readAll(vfs, p);
      out[r] = `${bytes.length} ${sha256(bytes)}`;
      if (bytes.length !== stats[i]!.size) out[r] += ` (listed as ${stats[i]!.size})`;
    }
  }
  return out;
}

t.test('five saves of a file: .stratus/versions/PATH/ lists five read-only files named by version, time and device, each with the bytes of its version', async (t) => {
  const { dev, user, deviceName } = await newDevice(t);
  const vfs = dev.h.vfs;
  await vfs.mkdir('/docs', 0o755);
  const saves: Buffer[] = [];
  for (let i = 0; i < 5; i++) {
    // Multi-block versions (small chunks), each different.
    saves.push(crypto.randomBytes(100_000 + i * 37_000));
    await writeAll(vfs, '/docs/report.txt', saves[i]!, { create: i === 0 });
    await drained(dev.h.queue);
  }
  const node = await remoteNode(user.client, 'docs/report.txt');
  t.equal(node?.head_version, 5, 'the server has five versions');
  const { versions } = await user.client.versions(node!.id);

  const { names, stats } = await vfs.readdir('/.stratus/versions/docs/report.txt');
  t.equal(names.length, 5, 'five entries');
  const byVersion = new Map<number, string>();
  for (const name of names) {
    const m = /^report v(\d+) (\d{4}-\d{2}-\d{2} \d{6}) (.+)\.txt$/.exec(name);
    t.ok(m, `"${name}" is STEM vN YYYY-MM-DD HHMMSS DEVICE.EXT`);
    if (!m) continue;
    const v = versions.find((x) => x.version === Number(m[1]))!;
    t.equal(m[2], v.committed_at.slice(0, 10) + ' ' + v.committed_at.slice(11, 19).replaceAll(':', ''), `v${m[1]}: its commit time (UTC)`);
    t.equal(m[3], deviceName, `v${m[1]}: the device that committed it`);
    byVersion.set(Number(m[1]), name);
  }
  t.same([...byVersion.keys()].sort(), [1, 2, 3, 4, 5]);
  for (let i = 0; i < names.length; i++) t.equal(stats[i]!.mode, S_IFREG | 0o444, `${names[i]}: r--r--r--`);
  for (const [version, name] of byVersion) {
    const p = `/.stratus/versions/docs/report.txt/${name}`;
    const st = await vfs.getattr(p);
    t.equal(st.size, saves[version - 1]!.length, `v${version}: its size`);
    t.ok(st.ino >= FIRST_VIRTUAL_INO, `v${version}: an inode number of the virtual range`);
    t.ok((await readAll(vfs, p)).equals(saves[version - 1]!), `v${version} reads the bytes of version ${version}`);
  }
  // A read in the middle, through an open handle; fstat answers the handle.
  const fh = await vfs.open(`/.stratus/versions/docs/report.txt/${byVersion.get(2)}`, fsc.O_RDONLY);
  t.ok((await readFh(vfs, fh, 5000, 70_000)).equals(saves[1]!.subarray(70_000, 75_000)), 'a range of version 2');
  t.equal((await vfs.fgetattr(fh)).size, saves[1]!.length, 'fstat of the open version');
  await vfs.release(fh);

  const inos = new Set(stats.map((s) => s.ino));
  t.equal(inos.size, 5, 'each version its own inode number');
  t.same((await vfs.readdir('/.stratus/versions/docs/report.txt')).stats.map((s) => s.ino), stats.map((s) => s.ino), 'stable across listings');
  t.same((await vfs.readdir('/.stratus/versions/docs')).names, ['report.txt'], 'a folder of the drive lists its files (and folders) again');
  t.equal((await vfs.getattr('/.stratus/versions/docs/report.txt')).mode, S_IFDIR | 0o555, 'a file is a folder of its versions here');

  // A sixth save shows at once (the list follows the file's head version).
  await writeAll(vfs, '/docs/report.txt', Buffer.from('six'));
  await drained(dev.h.queue);
  t.equal((await vfs.readdir('/.stratus/versions/docs/report.txt')).names.length, 6, 'a new version is listed');
});

t.test('.stratus is not listed in the root but resolves; its top lists at/ and versions/; at/ lists nothing', async (t) => {
  const { dev } = await newDevice(t);
  const vfs = dev.h.vfs;
  await vfs.mkdir('/a', 0o755);
  await writeAll(vfs, '/f', Buffer.from('f'), { create: true });
  await vfs.symlink('f', '/l');
  t.same((await vfs.readdir('/')).names.sort(), ['a', 'f', 'l'], 'the root does not list .stratus');
  const top = await vfs.getattr('/.stratus');
  t.equal(top.mode, S_IFDIR | 0o555, 'a read-only folder');
  t.ok(top.ino >= FIRST_VIRTUAL_INO);
  t.same((await vfs.readdir('/.stratus')).names, ['at', 'versions']);
  t.same((await vfs.readdir('/.stratus/at')).names, [], 'no time is listed');
  t.same((await vfs.readdir('/.stratus/versions')).names.sort(), ['a', 'f'], 'versions/ mirrors the root (links have no versions)');
  await drained(dev.h.queue);
  t.same((await vfs.readdir('/.stratus/versions/f')).names.length, 1);

  const nope = [
    ['/.stratus/nothing', 'ENOENT'],
    ['/.stratus/versions/missing', 'ENOENT'],
    ['/.stratus/versions/l', 'ENOENT'],
    ['/.stratus/versions/f/not a version', 'ENOENT'],
    ['/.stratus/at/yesterday', 'ENOENT'],
    ['/.stratus/at/2026-02-30T10:00', 'ENOENT'],
    [`/.stratus/at/${new Date(Date.now() + 3_600_000).toISOString()}`, 'ENOENT'],
    ['/.stratus/at/1970-01-01T00:00', 'ENOENT'],
    [`/.stratus/versions/f/${(await vfs.readdir('/.stratus/versions/f')).names[0]}/x`, 'ENOTDIR'],
  ] as const;
  for (const [p, code] of nope) await fails(t, vfs.getattr(p), code, `getattr ${p}`);
  await fails(t, vfs.open('/.stratus/versions/f', fsc.O_RDONLY), 'EISDIR', 'open of a versions folder');
  await fails(t, vfs.readlink('/.stratus/versions/f'), 'EINVAL', 'readlink of a folder');
});

t.test('.stratus/at/TIME/ is the whole tree as it was at TIME, for every recorded time, in ISO 8601 and in ms', async (t) => {
  const { dev, user } = await newDevice(t);
  const vfs = dev.h.vfs;
  const recorded: Array<{ at: number; tree: Record<string, string>; what: string }> = [];
  const record = async (what: string) => {
    await drained(dev.h.queue);
    recorded.push({ tree: await walk(vfs, '/'), at: await recordTime(), what });
  };
  await record('empty');

  await vfs.mkdir('/src', 0o755);
  await vfs.mkdir('/src/lib', 0o755);
  await writeAll(vfs, '/src/main.c', crypto.randomBytes(150_000), { create: true });
  await writeAll(vfs, '/src/lib/util.c', Buffer.from('int util;\n'), { create: true });
  await writeAll(vfs, '/notes.txt', Buffer.from('first\n'), { create: true });
  await vfs.symlink('src/main.c', '/main');
  await record('made');

  await writeAll(vfs, '/src/main.c', crypto.randomBytes(90_000));
  await vfs.rename('/notes.txt', '/src/notes.md');
  await record('edited, moved and renamed');

  const libId = (await remoteNode(user.client, 'src/lib'))!.id;
  await vfs.unlink('/src/lib/util.c');
  await vfs.rmdir('/src/lib');
  await writeAll(vfs, '/new.bin', crypto.randomBytes(300_000), { create: true });
  await record('deleted a file and its folder, made another');

  // Back from the trash through the API (the drive has no restore), then into the drive's tree.
  await user.client.restore(libId);
  await dev.h.pull();
  await vfs.rename('/src', '/source');
  await record('restored the folder, renamed src');

  for (const { at, tree, what } of recorded) {
    t.same(await walk(vfs, `/.stratus/at/${new Date(at).toISOString()}`), tree, `at ${new Date(at).toISOString()} (${what})`);
  }
  const made = recorded[1]!;
  t.same(await walk(vfs, `/.stratus/at/${made.at}`), made.tree, 'the same time in ms since the epoch');
  t.same(await walk(vfs, `/.stratus/at/${new Date(made.at).toISOString().replace('Z', '')}`), made.tree, 'and without a zone (UTC)');
  t.ok(Object.keys(recorded[4]!.tree).includes('source/lib/util.c'), 'sanity: the restore brought the file back');

  const st = await vfs.getattr(`/.stratus/at/${made.at}/src/main.c`);
  t.equal(st.mode, S_IFREG | 0o444, 'files there are r--r--r--');
  t.equal((await vfs.getattr(`/.stratus/at/${made.at}/src`)).mode, S_IFDIR | 0o555, 'folders r-xr-xr-x');
  t.equal((await vfs.getattr(`/.stratus/at/${made.at}/main`)).mode, S_IFLNK | 0o777, 'links are links');
  t.not(st.ino, (await vfs.getattr('/source/main.c')).ino, 'an inode number of its own, not the live file’s');
});

t.test('everything in .stratus is EROFS, also renames from or into it, and a refusal changes nothing', async (t) => {
  const { dev } = await newDevice(t);
  const vfs = dev.h.vfs;
  await writeAll(vfs, '/f.txt', Buffer.from('one'), { create: true });
  await drained(dev.h.queue);
  const version = `/.stratus/versions/f.txt/${(await vfs.readdir('/.stratus/versions/f.txt')).names[0]}`;
  const past = `/.stratus/at/${await recordTime()}`;
  const before = await backend.snapshot();
  const logged = dev.h.log.list().length;

  const refusals: Array<[string, () => Promise<unknown>]> = [
    ['create in versions/', () => vfs.create('/.stratus/versions/f.txt/new', 0o644)],
    ['create in at/', () => vfs.create(`${past}/new`, 0o644)],
    ['mkdir', () => vfs.mkdir(`${past}/d`, 0o755)],
    ['mkdir .stratus/x', () => vfs.mkdir('/.stratus/x', 0o755)],
    ['symlink', () => vfs.symlink('x', '/.stratus/at/l')],
    ['mknod', () => vfs.mknod(`${past}/n`, S_IFREG | 0o644)],
    ['unlink of a version', () => vfs.unlink(version)],
    ['unlink of a past file', () => vfs.unlink(`${past}/f.txt`)],
    ['rmdir of a past folder', () => vfs.rmdir(past)],
    ['rmdir of .stratus', () => vfs.rmdir('/.stratus')],
    ['rename from it', () => vfs.rename(version, '/restored.txt')],
    ['rename into it', () => vfs.rename('/f.txt', '/.stratus/versions/f.txt/x')],
    ['rename within it', () => vfs.rename(version, `${version}.bak`)],
    ['chmod', () => vfs.chmod(version, 0o644)],
    ['chown', () => vfs.chown(`${past}/f.txt`, process.getuid!(), process.getgid!())],
    ['utimens', () => vfs.utimens(version, 0, 0)],
    ['truncate', () => vfs.truncate(version, 0)],
    ['open for writing', () => vfs.open(version, fsc.O_WRONLY)],
    ['open for reading and writing', () => vfs.open(`${past}/f.txt`, fsc.O_RDWR)],
    ['open with O_TRUNC', () => vfs.open(version, fsc.O_RDONLY | fsc.O_TRUNC)],
    ['setxattr', () => vfs.setxattr(version)],
    ['removexattr', () => vfs.removexattr('/.stratus')],
  ];
  for (const [what, call] of refusals) await fails(t, call(), 'EROFS', what);
  const fh = await vfs.open(version, fsc.O_RDONLY);
  await fails(t, vfs.write(fh, Buffer.from('x'), 1, 0), 'EBADF', 'write through a read-only handle');
  await fails(t, vfs.ftruncate(fh, 0), 'EBADF', 'ftruncate through it');
  await vfs.release(fh);
  await fails(t, vfs.setxattr('/f.txt'), 'ENOTSUP', 'setxattr elsewhere: extended attributes are not kept');

  t.equal(dev.h.log.list().length, logged, 'nothing was logged');
  await drained(dev.h.queue);
  t.equal(await backend.snapshot(), before, 'the server holds exactly what it held');
  t.equal((await readAll(vfs, '/f.txt')).toString(), 'one', 'the file is as it was');
  t.equal((await readAll(vfs, version)).toString(), 'one');
});

t.test('offline: what was never fetched is EIO at once; what was fetched reads on', async (t) => {
  const { dev } = await newDevice(t);
  const vfs = dev.h.vfs;
  await writeAll(vfs, '/seen.txt', Buffer.from('seen'), { create: true });
  await writeAll(vfs, '/unseen.txt', Buffer.from('unseen'), { create: true });
  await drained(dev.h.queue);
  const [name] = (await vfs.readdir('/.stratus/versions/seen.txt')).names;
  t.equal((await readAll(vfs, `/.stratus/versions/seen.txt/${name}`)).toString(), 'seen');
  const past = `/.stratus/at/${await recordTime()}`;
  t.same((await vfs.readdir(past)).names.sort(), ['seen.txt', 'unseen.txt']);

  dev.down();
  const started = Date.now();
  await fails(t, vfs.readdir('/.stratus/versions/unseen.txt'), 'EIO', 'versions never listed');
  await fails(t, vfs.readdir(`/.stratus/at/${Date.now() - 1}`), 'EIO', 'a time never listed');
  t.ok(Date.now() - started < 5000, 'failing fast, not waiting');
  t.equal((await readAll(vfs, `/.stratus/versions/seen.txt/${name}`)).toString(), 'seen', 'a version read before reads on');
  t.same((await vfs.readdir(past)).names.sort(), ['seen.txt', 'unseen.txt'], 'a past folder listed before lists on');
});
