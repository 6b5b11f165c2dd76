import crypto from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import os from 'node:os';
import t, { type Test } from 'tap';
import { toErrno } from '../../mount/model/errors.js';
import type { StratusClient } from '../../protocol/client.js';
import { startTestBackend, type TestBackend, type TestUser } from '../helpers/backend.js';
import { drained, readAll, restartVfs, serverBytes, serverChild, switchableDevice, writeAll, type Device, type VfsHarness } from '../helpers/vfs.js';

/**
 * Working offline without FUSE (issue 4): with the server unreachable the mount makes files and
 * folders locally (ids `local:…`), queues them durably, and the commit queue creates them on the
 * server when it returns — folders first, across a restart, keeping both when a name was taken
 * meanwhile and making a deleted folder again. The conflict rules that involve the tree (edit vs
 * delete) are here too. Real in-process server; the network is cut by failing every client call.
 */

const KiB = 1024;
let backend: TestBackend;
let users = 0;

t.before(async () => {
  backend = await startTestBackend('sqlite', { chunking: { min: 16 * KiB, avg: 64 * KiB, max: 256 * KiB } });
});
t.teardown(() => backend?.close());

function device(t: Test, user: TestUser, name: string): Promise<Device> {
  return switchableDevice(t, backend.url, user.token, name);
}

async function newUser(): Promise<TestUser> {
  return backend.addUser(`offline${++users}`);
}

/** The live node at `p` on the server ("/a/b"), as the user's own client sees it. */
async function remotePath(client: StratusClient, p: string) {
  let dir: string | undefined;
  let node;
  for (const part of p.split('/').filter(Boolean)) {
    node = await serverChild(client, part, dir);
    if (!node) return undefined;
    dir = node.id;
  }
  return node;
}

/** Names of the nodes the tree shows that have no server id yet. */
function localOnly(h: VfsHarness): string[] {
  const out: string[] = [];
  const walk = (ino: number) => {
    for (const k of h.tree.children(ino)) {
      if (k.sid === null) out.push(k.name);
      walk(k.ino);
    }
  };
  walk(h.tree.rootIno);
  return out;
}

const bytes = (n: number) => crypto.randomBytes(n);

t.test('offline: folders and files are made here, readable at once, and created on the server (folders first) when it returns', async (t) => {
  const user = await newUser();
  const a = await device(t, user, 'laptop');
  a.down();
  const f1 = bytes(300 * KiB);
  const f2 = bytes(10);
  await a.h.vfs.mkdir('/docs', 0o755);
  await a.h.vfs.mkdir('/docs/deep', 0o700);
  await writeAll(a.h.vfs, '/docs/deep/f1.bin', f1, { create: true });
  await writeAll(a.h.vfs, '/top.txt', f2, { create: true });
  t.same((await a.h.vfs.readdir('/docs')).names, ['deep'], 'the offline folder lists its offline child');
  t.equal((await a.h.vfs.getattr('/docs/deep/f1.bin')).size, f1.length, 'getattr shows the queued size');
  t.ok((await readAll(a.h.vfs, '/docs/deep/f1.bin')).equals(f1), 'the offline file reads back from its staging file');
  t.equal(a.h.queue.pendingCount, 4, 'two folders and two files wait in the queue');
  t.equal(await remotePath(user.client, '/docs'), undefined, 'nothing reached the server');

  a.up();
  await drained(a.h.queue);
  const deep = await remotePath(user.client, '/docs/deep');
  t.equal(deep?.kind, 'dir', 'the folders exist on the server');
  t.equal(deep?.mode, 0o700, 'with their mode');
  const remote = await remotePath(user.client, '/docs/deep/f1.bin');
  t.ok(remote && (await serverBytes(user.client, remote.id)).bytes.equals(f1), 'the file has its bytes on the server');
  const top = await remotePath(user.client, '/top.txt');
  t.ok(top && (await serverBytes(user.client, top.id)).bytes.equals(f2), 'so does the one at the top');
  t.same(localOnly(a.h), [], 'every node has its server id now');
  t.equal(a.h.tree.bySidLive(remote!.id)?.name, 'f1.bin', 'the tree knows the file by its server id');
  t.ok((await readAll(a.h.vfs, '/docs/deep/f1.bin')).equals(f1), 'and it still reads the same');
});

t.test('a mount restarted while offline keeps its offline nodes and queue; they reach the server when it returns', async (t) => {
  const user = await newUser();
  const a = await device(t, user, 'laptop');
  a.down();
  const body = bytes(50 * KiB);
  await a.h.vfs.mkdir('/new', 0o755);
  await writeAll(a.h.vfs, '/new/kept.bin', body, { create: true });
  a.h = await restartVfs(a.h, 'close');
  t.same((await a.h.vfs.readdir('/new')).names, ['kept.bin'], 'after the restart the offline nodes are listed');
  t.ok((await readAll(a.h.vfs, '/new/kept.bin')).equals(body), 'and read');
  t.equal(a.h.queue.pendingCount, 2, 'the queue came back from disk');
  a.up();
  await drained(a.h.queue);
  const remote = await remotePath(user.client, '/new/kept.bin');
  t.ok(remote && (await serverBytes(user.client, remote.id)).bytes.equals(body), 'the file reached the server');
});

t.test('both devices create the same name: both kept, the offline one under a conflicted-copy name (seen first or met at creation)', async (t) => {
  const user = await newUser();
  const a = await device(t, user, 'laptop');
  const b = await device(t, user, 'desk');
  a.down();
  await writeAll(a.h.vfs, '/x.txt', Buffer.from('from the laptop'), { create: true });
  await writeAll(a.h.vfs, '/y.txt', Buffer.from('laptop y'), { create: true });
  await writeAll(b.h.vfs, '/x.txt', Buffer.from('from the desk'), { create: true });
  await writeAll(b.h.vfs, '/y.txt', Buffer.from('desk y'), { create: true });
  await drained(b.h.queue);
  a.up();
  // x.txt: the laptop hears of the desk's file before its queue runs; y.txt: the create meets it.
  await a.h.queue.drain(0);
  await a.h.pull();
  await drained(a.h.queue);
  await a.h.pull();
  for (const [name, theirs, ours] of [
    ['x', 'from the desk', 'from the laptop'],
    ['y', 'desk y', 'laptop y'],
  ] as const) {
    const names = (await a.h.vfs.readdir('/')).names.filter((n) => n.startsWith(name));
    const copy = names.find((n) => n.startsWith(`${name} (conflicted copy from laptop `) && n.endsWith(').txt'));
    t.ok(copy, `${name}: the laptop's file is kept as a conflicted copy (${names.join(', ')})`);
    t.equal(names.length, 2, `${name}: exactly the two files`);
    t.equal((await readAll(a.h.vfs, `/${name}.txt`)).toString(), theirs, `${name}: the name keeps the desk's bytes`);
    t.equal((await readAll(a.h.vfs, `/${copy}`)).toString(), ours, `${name}: the copy has the laptop's bytes`);
    const remote = await remotePath(user.client, `/${copy}`);
    t.ok(remote && (await serverBytes(user.client, remote.id)).bytes.toString() === ours, `${name}: the server has the copy too`);
  }
});

t.test('a folder deleted elsewhere while a file was added to it offline: the folder is made again with the file in it', async (t) => {
  const user = await newUser();
  const a = await device(t, user, 'laptop');
  const b = await device(t, user, 'desk');
  await a.h.vfs.mkdir('/proj', 0o755);
  await b.h.pull();
  a.down();
  await writeAll(a.h.vfs, '/proj/notes.md', Buffer.from('written offline'), { create: true });
  await b.h.vfs.rmdir('/proj');
  a.up();
  await a.h.pull();
  await drained(a.h.queue);
  await a.h.pull();
  const remote = await remotePath(user.client, '/proj/notes.md');
  t.ok(remote, 'the server has /proj/notes.md again');
  t.equal(remote && (await serverBytes(user.client, remote.id)).bytes.toString(), 'written offline', 'with the offline bytes');
  t.equal((await readAll(a.h.vfs, '/proj/notes.md')).toString(), 'written offline', 'the mount shows it at its path');
  await b.h.pull();
  t.equal((await readAll(b.h.vfs, '/proj/notes.md')).toString(), 'written offline', 'so does the device that deleted the folder');
});

t.test('edit vs delete: a file deleted elsewhere while open for writing here is kept with the edit, on both devices', async (t) => {
  const user = await newUser();
  const a = await device(t, user, 'laptop');
  const b = await device(t, user, 'desk');
  await writeAll(a.h.vfs, '/plan.txt', Buffer.from('v1'), { create: true });
  await drained(a.h.queue);
  await b.h.pull();
  const fh = await a.h.vfs.open('/plan.txt', fs.constants.O_WRONLY | fs.constants.O_TRUNC);
  await b.h.vfs.unlink('/plan.txt');
  await drained(b.h.queue);
  await a.h.pull();
  await a.h.vfs.write(fh, Buffer.from('v2 edited'), 9, 0);
  await a.h.vfs.flush(fh);
  await a.h.vfs.release(fh);
  await drained(a.h.queue);
  const remote = await remotePath(user.client, '/plan.txt');
  t.equal(remote && (await serverBytes(user.client, remote.id)).bytes.toString(), 'v2 edited', 'the server has the edited file under its name');
  await b.h.pull();
  t.equal((await readAll(b.h.vfs, '/plan.txt')).toString(), 'v2 edited', 'the deleting device sees the edit');
  await a.h.pull();
  t.equal((await readAll(a.h.vfs, '/plan.txt')).toString(), 'v2 edited', 'and so does the editing one');
});

t.test('offline renames, moves and deletes of nodes made offline stay local: only the end state reaches the server', async (t) => {
  const user = await newUser();
  const a = await device(t, user, 'laptop');
  a.down();
  await writeAll(a.h.vfs, '/draft.txt', Buffer.from('draft'), { create: true });
  await a.h.vfs.mkdir('/box', 0o755);
  await a.h.vfs.rename('/draft.txt', '/box/final.txt');
  await a.h.vfs.mkdir('/empty', 0o755);
  await a.h.vfs.rmdir('/empty');
  await writeAll(a.h.vfs, '/tmp.txt', Buffer.from('scratch'), { create: true });
  await a.h.vfs.unlink('/tmp.txt');
  await writeAll(a.h.vfs, '/over.txt', Buffer.from('old'), { create: true });
  await writeAll(a.h.vfs, '/over.tmp', Buffer.from('new'), { create: true });
  await a.h.vfs.rename('/over.tmp', '/over.txt');
  t.same((await a.h.vfs.readdir('/')).names.sort(), ['box', 'over.txt'], 'the mount shows the end state');
  t.same(await user.client.allChildren((await user.client.root()).id), [], 'nothing reached the server while offline');
  a.up();
  await drained(a.h.queue);
  const top = (await user.client.allChildren((await user.client.root()).id)).map((n) => n.name).sort();
  t.same(top, ['box', 'over.txt'], 'the server has exactly the end state');
  const final = await remotePath(user.client, '/box/final.txt');
  t.equal(final && (await serverBytes(user.client, final.id)).bytes.toString(), 'draft', 'the moved file has its bytes');
  const over = await remotePath(user.client, '/over.txt');
  t.equal(over && (await serverBytes(user.client, over.id)).bytes.toString(), 'new', 'the replaced file has the new bytes');
});

t.test('edit vs delete, the other order: a delete of a version the device had not seen leaves the newer edit in place', async (t) => {
  const user = await newUser();
  const a = await device(t, user, 'laptop');
  const b = await device(t, user, 'desk');
  await writeAll(a.h.vfs, '/report.txt', Buffer.from('v1'), { create: true });
  await drained(a.h.queue);
  await b.h.pull();
  await writeAll(a.h.vfs, '/report.txt', Buffer.from('v2 from the laptop'));
  await drained(a.h.queue);
  // The desk deletes before its change feed brought v2.
  await b.h.vfs.unlink('/report.txt');
  const remote = await remotePath(user.client, '/report.txt');
  t.equal(remote && (await serverBytes(user.client, remote.id)).bytes.toString(), 'v2 from the laptop', 'the server keeps the edited file');
  t.equal((await readAll(b.h.vfs, '/report.txt')).toString(), 'v2 from the laptop', 'the desk shows it again, with the edit');
  await writeAll(b.h.vfs, '/mine.txt', Buffer.from('x'), { create: true });
  await drained(b.h.queue);
  await writeAll(b.h.vfs, '/mine.txt', Buffer.from('xy'));
  await b.h.vfs.unlink('/mine.txt');
  await drained(b.h.queue);
  t.equal(await remotePath(user.client, '/mine.txt'), undefined, 'a delete of a file the device itself just saved goes through');
});

t.test('offline, also after a restart: what was read stays readable; a block never fetched fails with EIO instead of hanging', async (t) => {
  const user = await newUser();
  const a = await device(t, user, 'laptop');
  const b = await device(t, user, 'desk');
  const seen = bytes(200 * KiB);
  const unseen = bytes(200 * KiB);
  await writeAll(b.h.vfs, '/seen.bin', seen, { create: true });
  await writeAll(b.h.vfs, '/unseen.bin', unseen, { create: true });
  await drained(b.h.queue);
  await a.h.pull();
  t.ok((await readAll(a.h.vfs, '/seen.bin')).equals(seen), 'read once while online');
  a.down();
  t.ok((await readAll(a.h.vfs, '/seen.bin')).equals(seen), 'offline: still readable');
  a.h = await restartVfs(a.h, 'close');
  t.ok((await readAll(a.h.vfs, '/seen.bin')).equals(seen), 'offline after a restart: still readable (manifest and blocks from disk)');
  t.equal((await a.h.vfs.getattr('/unseen.bin')).size, unseen.length, 'the file never read is listed with its size');
  try {
    await readAll(a.h.vfs, '/unseen.bin');
    t.fail('reading a block never fetched should fail offline');
  } catch (err) {
    t.equal(toErrno(err), os.constants.errno.EIO, `reading it fails with EIO (${String(err)})`);
  }
});

t.test('offline renames, moves and deletes of what the server has are queued and sent in order when it returns', async (t) => {
  const user = await newUser();
  const a = await device(t, user, 'laptop');
  await a.h.vfs.mkdir('/d', 0o755);
  for (const p of ['/f1.txt', '/f2.txt', '/d/x.txt']) await writeAll(a.h.vfs, p, Buffer.from(p), { create: true });
  await drained(a.h.queue);
  a.down();
  await a.h.vfs.rename('/f1.txt', '/d/moved.txt');
  await a.h.vfs.unlink('/f2.txt');
  await a.h.vfs.rename('/d', '/d2');
  await a.h.vfs.mkdir('/fresh', 0o755);
  await a.h.vfs.rename('/d2/x.txt', '/fresh/x.txt');
  t.same((await a.h.vfs.readdir('/')).names.sort(), ['d2', 'fresh'], 'offline, the mount shows the end state');
  t.same((await a.h.vfs.readdir('/d2')).names, ['moved.txt'], 'inside the renamed folder too');
  t.ok(await remotePath(user.client, '/f1.txt'), 'nothing reached the server while offline');
  a.up();
  await drained(a.h.queue);
  const top = (await user.client.allChildren((await user.client.root()).id)).map((n) => n.name).sort();
  t.same(top, ['d2', 'fresh'], 'the server has the end state');
  const moved = await remotePath(user.client, '/d2/moved.txt');
  t.equal(moved && (await serverBytes(user.client, moved.id)).bytes.toString(), '/f1.txt', 'the moved file kept its content');
  const x = await remotePath(user.client, '/fresh/x.txt');
  t.equal(x && (await serverBytes(user.client, x.id)).bytes.toString(), '/d/x.txt', 'the file moved into a folder made offline too');
});

t.test('edit vs delete with the deleting device offline: the edit survives on both devices', async (t) => {
  const user = await newUser();
  const a = await device(t, user, 'laptop');
  const b = await device(t, user, 'desk');
  await writeAll(a.h.vfs, '/p.txt', Buffer.from('v1'), { create: true });
  await drained(a.h.queue);
  await b.h.pull();
  b.down();
  await b.h.vfs.unlink('/p.txt');
  t.same((await b.h.vfs.readdir('/')).names, [], 'offline, the desk shows it deleted');
  await writeAll(a.h.vfs, '/p.txt', Buffer.from('v2 edited on the laptop'));
  await drained(a.h.queue);
  b.up();
  await drained(b.h.queue);
  const remote = await remotePath(user.client, '/p.txt');
  t.equal(remote && (await serverBytes(user.client, remote.id)).bytes.toString(), 'v2 edited on the laptop', 'the server kept the edited file');
  await b.h.pull();
  t.equal((await readAll(b.h.vfs, '/p.txt')).toString(), 'v2 edited on the laptop', 'the desk shows it again, edited');
  await a.h.pull();
  t.equal((await readAll(a.h.vfs, '/p.txt')).toString(), 'v2 edited on the laptop', 'the laptop still has it');
});

t.test('a folder removed (rmdir) on an offline device while another adds a file to it: folder and file survive', async (t) => {
  const user = await newUser();
  const a = await device(t, user, 'laptop');
  const b = await device(t, user, 'desk');
  await a.h.vfs.mkdir('/q', 0o755);
  await b.h.pull();
  t.same((await b.h.vfs.readdir('/q')).names, [], 'the desk sees the empty folder');
  b.down();
  await b.h.vfs.rmdir('/q');
  await writeAll(a.h.vfs, '/q/new.txt', Buffer.from('added'), { create: true });
  await drained(a.h.queue);
  b.up();
  await drained(b.h.queue);
  const remote = await remotePath(user.client, '/q/new.txt');
  t.equal(remote && (await serverBytes(user.client, remote.id)).bytes.toString(), 'added', 'the server kept the folder with the file');
  await b.h.pull();
  t.equal((await readAll(b.h.vfs, '/q/new.txt')).toString(), 'added', 'the desk shows the folder and the file');
});

t.test('rmdir of a folder another device just added a file to (not yet seen here): the server keeps the folder, which comes back with the file', async (t) => {
  const user = await newUser();
  const a = await device(t, user, 'laptop');
  const b = await device(t, user, 'desk');
  await a.h.vfs.mkdir('/w', 0o755);
  await drained(a.h.queue);
  await b.h.pull();
  t.same((await b.h.vfs.readdir('/w')).names, [], 'the desk sees the empty folder');
  await writeAll(a.h.vfs, '/w/late.txt', Buffer.from('late'), { create: true });
  await drained(a.h.queue);
  // Empty as far as the desk knows: removed here at once; the server refuses to remove a folder that is not empty.
  await b.h.vfs.rmdir('/w');
  await drained(b.h.queue);
  t.same((await b.h.vfs.readdir('/w')).names, ['late.txt'], 'the desk lists the folder again and sees the file');
  t.ok(await remotePath(user.client, '/w/late.txt'), 'the server still has it');
});

t.test('rename on one device, edit on the other: the edit lands in the renamed file on both', async (t) => {
  const user = await newUser();
  const a = await device(t, user, 'laptop');
  const b = await device(t, user, 'desk');
  await writeAll(a.h.vfs, '/r.txt', Buffer.from('original'), { create: true });
  await drained(a.h.queue);
  await b.h.pull();
  const fh = await b.h.vfs.open('/r.txt', fs.constants.O_WRONLY | fs.constants.O_TRUNC);
  await a.h.vfs.rename('/r.txt', '/renamed.txt');
  await b.h.pull();
  await b.h.vfs.write(fh, Buffer.from('edited on the desk'), 18, 0);
  await b.h.vfs.flush(fh);
  await b.h.vfs.release(fh);
  await drained(b.h.queue);
  const remote = await remotePath(user.client, '/renamed.txt');
  t.equal(remote && (await serverBytes(user.client, remote.id)).bytes.toString(), 'edited on the desk', 'the server has the edit in the renamed file');
  t.equal(await remotePath(user.client, '/r.txt'), undefined, 'the old name is gone');
  await a.h.pull();
  t.equal((await readAll(a.h.vfs, '/renamed.txt')).toString(), 'edited on the desk', 'the renaming device sees the edit');
  t.same((await b.h.vfs.readdir('/')).names, ['renamed.txt'], 'the editing device shows the new name only');
});

t.test('rename here (queued), edit elsewhere seen meanwhile: once the rename is sent, the renamed file shows the edit', async (t) => {
  const user = await newUser();
  const a = await device(t, user, 'laptop');
  const b = await device(t, user, 'desk');
  await writeAll(a.h.vfs, '/old.txt', Buffer.from('base'), { create: true });
  await drained(a.h.queue);
  await b.h.pull();
  t.equal((await readAll(b.h.vfs, '/old.txt')).toString(), 'base', 'the desk shows the base');
  // The desk's rename waits (its update call fails) while the laptop's edit reaches the desk's feed.
  b.faults.offline.add('update');
  await b.h.vfs.rename('/old.txt', '/new.txt');
  await writeAll(a.h.vfs, '/old.txt', Buffer.from('edited on the laptop'));
  await drained(a.h.queue);
  await b.h.pull();
  t.equal((await readAll(b.h.vfs, '/new.txt')).toString(), 'base', 'while the rename waits, the desk shows its own state');
  const applied = once(b.h.syncer, 'applied', { signal: AbortSignal.timeout(10_000) });
  b.up();
  await drained(b.h.queue);
  await applied;
  t.equal((await readAll(b.h.vfs, '/new.txt')).toString(), 'edited on the laptop', 'the rename sent, the desk fetches the edit it passed over');
  const remote = await remotePath(user.client, '/new.txt');
  t.equal(remote && (await serverBytes(user.client, remote.id)).bytes.toString(), 'edited on the laptop', 'the server has the edit under the new name');
});

t.test('offline: a file with a queued edit, then renamed: it shows and keeps the edit (no false conflict)', async (t) => {
  const user = await newUser();
  const a = await device(t, user, 'laptop');
  await writeAll(a.h.vfs, '/f.txt', Buffer.from('v1'), { create: true });
  await drained(a.h.queue);
  a.down();
  await writeAll(a.h.vfs, '/f.txt', Buffer.from('v2, longer, edited offline'));
  await a.h.vfs.rename('/f.txt', '/g.txt');
  t.equal((await a.h.vfs.getattr('/g.txt')).size, 26, 'getattr shows the edited size, not the queued rename');
  t.equal((await readAll(a.h.vfs, '/g.txt')).toString(), 'v2, longer, edited offline', 'reads the edit');
  a.up();
  await drained(a.h.queue);
  const top = (await user.client.allChildren((await user.client.root()).id)).map((n) => n.name);
  t.same(top, ['g.txt'], 'one file on the server, no conflicted copy');
  const g = await remotePath(user.client, '/g.txt');
  t.equal(g && (await serverBytes(user.client, g.id)).bytes.toString(), 'v2, longer, edited offline', 'with the edit');
});

t.test('offline: what depends on names replays in order: rm f then a new f; mv f f.bak then mv f.new f', async (t) => {
  const user = await newUser();
  const a = await device(t, user, 'laptop');
  await writeAll(a.h.vfs, '/f', Buffer.from('old f'), { create: true });
  await writeAll(a.h.vfs, '/g', Buffer.from('old g'), { create: true });
  await drained(a.h.queue);
  a.down();
  await a.h.vfs.unlink('/f');
  await writeAll(a.h.vfs, '/f', Buffer.from('new f'), { create: true });
  await a.h.vfs.rename('/g', '/g.bak');
  await writeAll(a.h.vfs, '/g.new', Buffer.from('new g'), { create: true });
  await a.h.vfs.rename('/g.new', '/g');
  a.up();
  await drained(a.h.queue);
  const top = (await user.client.allChildren((await user.client.root()).id)).map((n) => n.name).sort();
  t.same(top, ['f', 'g', 'g.bak'], 'exactly these names, no conflicted copies');
  for (const [p, want] of [['/f', 'new f'], ['/g', 'new g'], ['/g.bak', 'old g']] as const) {
    const n = await remotePath(user.client, p);
    t.equal(n && (await serverBytes(user.client, n.id)).bytes.toString(), want, `${p} holds "${want}"`);
  }
});

t.test('a file made offline, deleted or renamed while the queue is creating it on the server: the delete or rename stands', async (t) => {
  const user = await newUser();
  const a = await device(t, user, 'laptop');
  a.down();
  await writeAll(a.h.vfs, '/gone.txt', Buffer.from('short-lived'), { create: true });
  await writeAll(a.h.vfs, '/draft.part', Buffer.from('final bytes'), { create: true });
  a.faults.hold('create');
  a.up();
  await a.faults.waiting('create');
  await a.h.vfs.unlink('/gone.txt');
  a.faults.open('create');
  a.faults.hold('create');
  await a.faults.waiting('create');
  await a.h.vfs.rename('/draft.part', '/final.txt');
  a.faults.open('create');
  await drained(a.h.queue);
  const top = (await user.client.allChildren((await user.client.root()).id)).map((n) => n.name).sort();
  t.same(top, ['final.txt'], 'the deleted file is not on the server, the renamed one is under its new name');
  const f = await remotePath(user.client, '/final.txt');
  t.equal(f && (await serverBytes(user.client, f.id)).bytes.toString(), 'final bytes', 'with its bytes');
  t.same((await a.h.vfs.readdir('/')).names, ['final.txt'], 'the mount shows the same');
});

t.test('offline editor save: a temp file renamed over a file the server has becomes its next version (same node, history kept), also while still open', async (t) => {
  const user = await newUser();
  const a = await device(t, user, 'laptop');
  await writeAll(a.h.vfs, '/doc.txt', Buffer.from('v1'), { create: true });
  await drained(a.h.queue);
  const id = (await remotePath(user.client, '/doc.txt'))!.id;
  a.down();
  await writeAll(a.h.vfs, '/.doc.txt.swp', Buffer.from('v2 saved offline'), { create: true });
  await a.h.vfs.rename('/.doc.txt.swp', '/doc.txt');
  t.same((await a.h.vfs.readdir('/')).names, ['doc.txt'], 'one file');
  t.equal((await readAll(a.h.vfs, '/doc.txt')).toString(), 'v2 saved offline', 'showing the saved bytes');
  // os.replace(tmp, doc) while tmp is still open, then more writes through it.
  const fh = await a.h.vfs.create('/doc.tmp', 0o644);
  await a.h.vfs.write(fh, Buffer.from('v3 part one'), 11, 0);
  await a.h.vfs.rename('/doc.tmp', '/doc.txt');
  await a.h.vfs.write(fh, Buffer.from(', part two'), 10, 11);
  await a.h.vfs.flush(fh);
  await a.h.vfs.release(fh);
  t.equal((await readAll(a.h.vfs, '/doc.txt')).toString(), 'v3 part one, part two', 'writes after the rename land in the file');
  a.up();
  await drained(a.h.queue);
  const top = (await user.client.allChildren((await user.client.root()).id)).map((n) => n.name);
  t.same(top, ['doc.txt'], 'the server has the one file, no temp file, no conflicted copy');
  const doc = await remotePath(user.client, '/doc.txt');
  t.equal(doc?.id, id, 'the same node');
  t.equal(doc && (await serverBytes(user.client, doc.id)).bytes.toString(), 'v3 part one, part two', 'with the last save');
  t.ok((doc?.head_version ?? 0) >= 2, `its history grew (head version ${doc?.head_version})`);
});

t.test('a queued move the server refuses for good is dropped (the node stays where the server has it) and does not hold up the rest of the queue', async (t) => {
  const user = await newUser();
  const a = await device(t, user, 'laptop');
  const b = await device(t, user, 'desk');
  await a.h.vfs.mkdir('/A', 0o755);
  await a.h.vfs.mkdir('/B', 0o755);
  await drained(a.h.queue);
  await b.h.pull();
  await b.h.vfs.readdir('/B');
  b.down();
  await b.h.vfs.rename('/A', '/B/A');
  await writeAll(b.h.vfs, '/after.txt', Buffer.from('queued after the move'), { create: true });
  await a.h.vfs.rename('/B', '/A/B'); // meanwhile B went into A: moving A into B is now a cycle
  await drained(a.h.queue);
  b.up();
  await drained(b.h.queue);
  const after = await remotePath(user.client, '/after.txt');
  t.equal(after && (await serverBytes(user.client, after.id)).bytes.toString(), 'queued after the move', 'what was queued after the refused move reached the server');
  t.ok(await remotePath(user.client, '/A/B'), 'the server keeps the other device\'s move');
  await b.h.pull();
  t.same((await b.h.vfs.readdir('/')).names.sort(), ['A', 'after.txt'], 'the desk shows the server\'s tree');
});

t.test('a name the server would refuse (not NFC) is refused at once, online and offline (EINVAL), and nothing is queued', async (t) => {
  const user = await newUser();
  const a = await device(t, user, 'laptop');
  const nfd = 'cafe\u0301.txt';
  for (const state of ['online', 'offline']) {
    if (state === 'offline') a.down();
    try {
      await a.h.vfs.create(`/${nfd}`, 0o644);
      t.fail(`${state}: create should fail`);
    } catch (err) {
      t.equal(toErrno(err), os.constants.errno.EINVAL, `${state}: create → EINVAL`);
    }
  }
  t.equal(a.h.queue.pendingCount, 0, 'nothing queued');
});
