import { constants as fsc } from 'node:fs';
import t, { type Test } from 'tap';
import type { NodeInfo } from '../../protocol/types.js';
import { startTestBackend, type TestBackend, type TestUser } from '../helpers/backend.js';
import { remoteNode } from '../helpers/drive.js';
import { drained, fails, readAll, restartVfs, serverBytes, switchableDevice, writeAll, type Device } from '../helpers/vfs.js';

/**
 * Symbolic links in the drive without FUSE: the Vfs's symlink and readlink over a real in-process
 * server, with the real tree, state store, commit queue and syncer. What the kernel sees of a link
 * (S_IFLNK, 0777, size = target bytes), the errno of every refusal, renames and replaces with
 * links on either side, links arriving from the change feed, links made offline (queued like
 * folders, kept across a restart), and the conflict rules when two devices make one name.
 */

const S_IFLNK = 0o120000;
const S_IFMT = 0o170000;

let backend: TestBackend;
let users = 0;

t.before(async () => {
  backend = await startTestBackend('sqlite');
});
t.teardown(() => backend?.close());

async function newUser(): Promise<TestUser> {
  return backend.addUser(`links${++users}`);
}

function device(t: Test, user: TestUser, name: string): Promise<Device> {
  return switchableDevice(t, backend.url, user.token, name);
}

/** The live link at `p` on the server, or a failure naming what is there instead. */
async function serverLink(t: Test, user: TestUser, p: string): Promise<NodeInfo | undefined> {
  const node = await remoteNode(user.client, p);
  if (node?.kind !== 'link') t.fail(`server: ${p} is not a link (${JSON.stringify(node)})`);
  return node;
}

t.test('symlink makes the link here at once and on the server once sent; readlink, getattr (S_IFLNK, 0777, size in bytes) and readdir show it, also after a restart without the server', async (t) => {
  const user = await newUser();
  const a = await device(t, user, 'laptop');
  const targets: Record<string, string> = { rel: '../lib/libx.so.1', abs: '/usr/share/é', dangling: 'no/such/thing', dot: '.', deep: 'a/'.repeat(400) + 'z' };
  for (const [name, target] of Object.entries(targets)) await a.h.vfs.symlink(target, `/${name}`);
  await drained(a.h.queue);
  for (const [name, target] of Object.entries(targets)) {
    t.equal(await a.h.vfs.readlink(`/${name}`), target, `readlink ${name}`);
    const st = await a.h.vfs.getattr(`/${name}`);
    t.equal(st.mode, S_IFLNK | 0o777, `${name}: a link, mode 0777`);
    t.equal(st.size, Buffer.byteLength(target), `${name}: size is the target's byte length`);
    t.equal(st.nlink, 1);
    t.match(await serverLink(t, user, name), { target, size: Buffer.byteLength(target), mode: 0o777 }, `server: ${name} holds the target as written`);
  }
  const listing = await a.h.vfs.readdir('/');
  t.same([...listing.names].sort(), Object.keys(targets).sort(), 'readdir lists them');
  t.ok(listing.stats.every((s) => (s.mode & S_IFMT) === S_IFLNK), 'with link stats (no lookup needed)');

  // The saved tree keeps the targets: a restart while the server is away still reads them.
  a.down();
  a.h = await restartVfs(a.h);
  for (const [name, target] of Object.entries(targets)) t.equal(await a.h.vfs.readlink(`/${name}`), target, `after a restart, offline: readlink ${name}`);
});

t.test('refusals: bad targets, taken names, links where a file or folder is needed — each with its errno, nothing sent', async (t) => {
  const user = await newUser();
  const a = await device(t, user, 'laptop');
  const vfs = a.h.vfs;
  await writeAll(vfs, '/file', Buffer.from('x'), { create: true });
  await drained(a.h.queue);
  await vfs.symlink('file', '/link');
  await drained(a.h.queue);
  const creates = a.faults.count('create');
  await fails(t, vfs.symlink('', '/e'), 'EINVAL', 'an empty target');
  await fails(t, vfs.symlink('x'.repeat(4096), '/long'), 'ENAMETOOLONG', 'a target over 4095 bytes');
  await fails(t, vfs.symlink('was \uFFFD not UTF-8', '/ffd'), 'EILSEQ', 'a target with U+FFFD (what the binding makes of bytes that are not UTF-8)');
  await fails(t, vfs.symlink('a\uD800b', '/sur'), 'EINVAL', 'a target with a lone surrogate');
  await fails(t, vfs.symlink('t', '/e\u0301'), 'EINVAL', 'a name that is not NFC');
  await fails(t, vfs.symlink('t', '/link'), 'EEXIST', 'onto a link');
  await fails(t, vfs.symlink('t', '/file'), 'EEXIST', 'onto a file');
  await fails(t, vfs.symlink('t', '/link/x'), 'ENOTDIR', 'inside a link');
  await fails(t, vfs.readlink('/file'), 'EINVAL', 'readlink of a file');
  await fails(t, vfs.readlink('/'), 'EINVAL', 'readlink of a folder');
  await fails(t, vfs.readlink('/missing'), 'ENOENT', 'readlink of nothing');
  await fails(t, vfs.open('/link', fsc.O_RDONLY), 'ELOOP', 'open of the link itself (O_NOFOLLOW)');
  await fails(t, vfs.chmod('/link', 0o600), 'EOPNOTSUPP', 'chmod of the link itself (fchmodat AT_SYMLINK_NOFOLLOW)');
  await fails(t, vfs.readdir('/link'), 'ENOTDIR', 'readdir of a link');
  await fails(t, vfs.rmdir('/link'), 'ENOTDIR', 'rmdir of a link');
  t.equal(a.faults.count('create'), creates, 'none of them reached the server');
  await vfs.symlink('é'.repeat(2047) + 'x', '/longest');
  t.equal((await vfs.getattr('/longest')).size, 4095, 'the longest target Linux takes is fine');
});

t.test('rename, move, utimens and unlink of a link reach the server; the link keeps its id and target', async (t) => {
  const user = await newUser();
  const a = await device(t, user, 'laptop');
  await a.h.vfs.mkdir('/d', 0o755);
  await a.h.vfs.symlink('../t', '/l');
  await drained(a.h.queue);
  const made = await serverLink(t, user, 'l');
  await a.h.vfs.rename('/l', '/d/m');
  t.equal(await a.h.vfs.readlink('/d/m'), '../t');
  await drained(a.h.queue);
  t.match(await serverLink(t, user, 'd/m'), { id: made?.id, target: '../t' }, 'server: the same link, moved');
  // lutimes (cp -a, tar x, rsync -a set a link's time after making it).
  await a.h.vfs.utimens('/d/m', null, 1_000_000_000_000);
  t.equal((await a.h.vfs.getattr('/d/m')).mtime, 1_000_000_000_000);
  await drained(a.h.queue);
  t.match(await serverLink(t, user, 'd/m'), { mtime: 1_000_000_000_000 }, 'server: the mtime');
  await a.h.vfs.unlink('/d/m');
  await fails(t, a.h.vfs.readlink('/d/m'), 'ENOENT', 'gone here');
  await drained(a.h.queue);
  t.not((await user.client.node(made!.id)).deleted_at, null, 'server: in the trash');
});

t.test('rename over: a link replaces a file (whose open writer then writes an unlinked file) or a link; a file replaces a link; links and folders never replace each other', async (t) => {
  const user = await newUser();
  const a = await device(t, user, 'laptop');
  const vfs = a.h.vfs;
  await writeAll(vfs, '/f', Buffer.from('file v1'), { create: true });
  await drained(a.h.queue);
  const file = await remoteNode(user.client, 'f');
  const fh = await vfs.open('/f', fsc.O_WRONLY);
  await vfs.write(fh, Buffer.from('lost'), 4, 0);
  await vfs.symlink('one', '/l1');
  await vfs.rename('/l1', '/f');
  t.equal(await vfs.readlink('/f'), 'one', 'a link over a file');
  await drained(a.h.queue);
  t.match(await serverLink(t, user, 'f'), { target: 'one' });
  t.not((await user.client.node(file!.id)).deleted_at, null, 'server: the file is in the trash (restorable, history kept)');
  await vfs.release(fh);
  await drained(a.h.queue);
  t.same((await user.client.allChildren((await user.client.root()).id)).map((n) => n.name), ['f'], 'what was written to the replaced file is not kept anywhere (as after unlink)');
  t.equal((await user.client.node(file!.id)).head_version, 1, 'nor committed to it');

  await vfs.symlink('two', '/l2');
  await vfs.rename('/l2', '/f');
  t.equal(await vfs.readlink('/f'), 'two', 'a link over a link');
  await drained(a.h.queue);
  t.match(await serverLink(t, user, 'f'), { target: 'two' });

  await writeAll(vfs, '/g', Buffer.from('a file again'), { create: true });
  await vfs.rename('/g', '/f');
  t.equal((await vfs.getattr('/f')).mode & S_IFMT, 0o100000, 'a file over a link');
  t.equal((await readAll(vfs, '/f')).toString(), 'a file again');
  await drained(a.h.queue);
  const now = await remoteNode(user.client, 'f');
  t.equal(now?.kind, 'file');
  t.equal(now && (await serverBytes(user.client, now.id)).bytes.toString(), 'a file again', 'server: the file, with its bytes');

  await vfs.mkdir('/dir', 0o755);
  await vfs.symlink('dir', '/l3');
  await fails(t, vfs.rename('/l3', '/dir'), 'EISDIR', 'a link over a folder');
  await fails(t, vfs.rename('/dir', '/l3'), 'ENOTDIR', 'a folder over a link');
  t.equal(await vfs.readlink('/l3'), 'dir', 'both stay');
});

t.test('links made, moved and deleted on another device arrive through the change feed', async (t) => {
  const user = await newUser();
  const a = await device(t, user, 'laptop');
  const b = await device(t, user, 'desk');
  await b.h.vfs.mkdir('/sub', 0o755);
  await b.h.vfs.symlink('../elsewhere', '/sub/ln');
  await drained(b.h.queue);
  await a.h.pull();
  t.equal(await a.h.vfs.readlink('/sub/ln'), '../elsewhere', 'a new link');
  t.equal((await a.h.vfs.getattr('/sub/ln')).size, 12);
  await b.h.vfs.rename('/sub/ln', '/moved');
  await drained(b.h.queue);
  await a.h.pull();
  await fails(t, a.h.vfs.readlink('/sub/ln'), 'ENOENT', 'the old name is gone');
  t.equal(await a.h.vfs.readlink('/moved'), '../elsewhere', 'a moved link');
  await b.h.vfs.unlink('/moved');
  await drained(b.h.queue);
  await a.h.pull();
  await fails(t, a.h.vfs.readlink('/moved'), 'ENOENT', 'a deleted link');
});

t.test('offline: a link is made here (readable at once, kept across a restart, its lutimes too) and created on the server when it returns, inside folders made offline as well', async (t) => {
  const user = await newUser();
  const a = await device(t, user, 'laptop');
  a.down();
  await a.h.vfs.symlink('../x', '/off');
  await a.h.vfs.utimens('/off', null, 1_234_000);
  await a.h.vfs.mkdir('/offdir', 0o755);
  await a.h.vfs.symlink('sibling', '/offdir/inner');
  await a.h.vfs.symlink('short-lived', '/gone');
  await a.h.vfs.unlink('/gone');
  await a.h.vfs.symlink('renamed', '/before');
  await a.h.vfs.rename('/before', '/after');
  t.equal(await a.h.vfs.readlink('/off'), '../x', 'readable at once');
  t.match(await a.h.vfs.getattr('/off'), { mode: S_IFLNK | 0o777, size: 4, mtime: 1_234_000 });
  t.equal(a.h.queue.pendingCount, 4, 'three links and a folder wait in the queue');
  t.same(await user.client.allChildren((await user.client.root()).id), [], 'nothing reached the server');

  a.h = await restartVfs(a.h);
  t.equal(await a.h.vfs.readlink('/offdir/inner'), 'sibling', 'after a restart, still offline');
  t.equal(a.h.queue.pendingCount, 4, 'the queue came back from disk');

  a.up();
  await drained(a.h.queue);
  t.match(await serverLink(t, user, 'off'), { target: '../x', mtime: 1_234_000 }, 'server: the link, with its time');
  t.match(await serverLink(t, user, 'offdir/inner'), { target: 'sibling' }, 'server: the link in the offline folder');
  t.match(await serverLink(t, user, 'after'), { target: 'renamed' }, 'server: the renamed link under its last name');
  t.equal(await remoteNode(user.client, 'gone'), undefined, 'server: the deleted one never arrived');
  t.equal(await remoteNode(user.client, 'before'), undefined);
  const off = await remoteNode(user.client, 'off');
  t.equal(a.h.tree.child(a.h.tree.rootIno, 'off')!.sid, off?.id, 'the tree has the server id now');
});

t.test('two devices make one name: the later link is a conflicted copy (online race and offline); an offline link that meets the same link merges, as does one whose create landed with its reply lost', async (t) => {
  const user = await newUser();
  const a = await device(t, user, 'laptop');
  const b = await device(t, user, 'desk');
  const names = async () => (await user.client.allChildren((await user.client.root()).id)).map((n) => [n.name, n.target]);

  // Online: the desk has not heard of the laptop's link when it makes its own.
  await a.h.vfs.symlink('from-laptop', '/race');
  await b.h.vfs.symlink('from-desk', '/race');
  // Offline: both devices make /x and /same; the desk's reach the server last.
  b.down();
  await b.h.vfs.symlink('desk-x', '/x');
  await b.h.vfs.symlink('one target', '/same');
  await a.h.vfs.symlink('laptop-x', '/x');
  await a.h.vfs.symlink('one target', '/same');
  b.up();
  await drained(b.h.queue);
  // The reply of a create is lost: the mount makes it offline, the queue finds it made.
  b.faults.loseReply.set('create', 1);
  await b.h.vfs.symlink('t', '/lost');
  await drained(b.h.queue);

  const server = await names();
  const copies = (base: string) => server.filter(([n]) => n!.startsWith(`${base} (conflicted copy from desk `));
  t.same(server.filter(([n]) => n === 'race' || n === 'x' || n === 'same' || n === 'lost'), [['lost', 't'], ['race', 'from-laptop'], ['same', 'one target'], ['x', 'laptop-x']], 'the first to reach the server keeps the name');
  t.same(copies('race').map(([, target]) => target), ['from-desk'], 'online race: the desk\'s link is kept as a conflicted copy');
  t.same(copies('x').map(([, target]) => target), ['desk-x'], 'offline: the desk\'s link is kept as a conflicted copy');
  t.same(copies('same'), [], 'offline, the same target: one link, no copy');
  t.same(copies('lost'), [], 'a reply lost: one link, no copy');
  t.equal(server.length, 6, 'nothing else');
  await b.h.pull();
  const seen = (await b.h.vfs.readdir('/')).names.sort();
  t.same(seen, server.map(([n]) => n).sort(), 'the desk shows the server\'s tree');
  for (const [name, target] of server) t.equal(await b.h.vfs.readlink(`/${name}`), target, `desk: ${name}`);
});
