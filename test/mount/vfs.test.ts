import crypto from 'node:crypto';
import { constants as fsc } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { BlockSource } from '../../mount/blocks/block-source.js';
import type { Errno } from '../../mount/model/errors.js';
import type { StratusClient } from '../../protocol/client.js';
import { commitRandomBlocks, randomBlock, startTestBackend, type TestBackend, type TestUser } from '../helpers/backend.js';
import {
  assembleVfs,
  drained,
  fails,
  Faults,
  logWatcher,
  readAll,
  readFh,
  serverBytes,
  serverChild,
  SMALL_CHUNKING,
  writeAll,
  type VfsHarness,
  type VfsOptions,
} from '../helpers/vfs.js';

/**
 * The mount's file system without FUSE (DESIGN §6): the Vfs over a real in-process server, with
 * the real tree, block source, cache, chunker pool and commit queue. No sleeps: commits are awaited
 * with `queue.drain`, in-flight states are reached by holding client calls at a gate.
 */

const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNKING = SMALL_CHUNKING;

let backend: TestBackend;
let users = 0;

t.before(async () => {
  backend = await startTestBackend('sqlite', { chunking: CHUNKING });
});
t.teardown(() => backend?.close());

interface Setup {
  h: VfsHarness;
  user: TestUser;
}

/** A fresh user and a mount of its drive on a fresh cache folder; closed and removed at teardown. */
async function setup(t: Test, opts: Partial<VfsOptions> = {}, on: TestBackend = backend): Promise<Setup> {
  const user = await on.addUser(`vfs${++users}`);
  const cacheDir = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-vfs-'));
  const h = await assembleVfs({ url: on.url, token: user.token, cacheDir, ...opts });
  t.teardown(async () => {
    await h.close();
    await fs.rm(cacheDir, { recursive: true, force: true });
  });
  return { h, user };
}

/** A second mount of `user`'s drive on its own cache folder (another device), closed at teardown. */
async function anotherDevice(t: Test, user: TestUser): Promise<VfsHarness> {
  const cacheDir = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-vfs-'));
  const other = await assembleVfs({ url: backend.url, token: user.token, cacheDir });
  t.teardown(async () => {
    await other.close();
    await fs.rm(cacheDir, { recursive: true, force: true });
  });
  return other;
}

const bytes = (n: number) => crypto.randomBytes(n);

async function stagingFiles(h: VfsHarness): Promise<string[]> {
  return fs.readdir(h.stagingDir);
}

t.test('create + write + release: after the drain the server has version 1 with the bytes and the mtime', async (t) => {
  const { h, user } = await setup(t);
  const data = bytes(700 * KiB);
  const fh = await h.vfs.create('/a.bin', 0o640);
  await h.vfs.write(fh, data.subarray(0, 300 * KiB), 300 * KiB, 0);
  await h.vfs.write(fh, data.subarray(300 * KiB), data.length - 300 * KiB, 300 * KiB);
  const during = await h.vfs.getattr('/a.bin');
  t.equal(during.size, data.length, 'getattr of the file being written shows the written size');
  await h.vfs.release(fh);
  t.equal(h.queue.pendingCount, 1, 'release queued the commit');
  t.equal((await h.vfs.getattr('/a.bin')).size, data.length, 'queued content: the size shows before the commit');
  t.same(await readAll(h.vfs, '/a.bin'), data, 'queued content reads back from the staging file');
  await drained(h.queue);

  const node = await serverChild(user.client, 'a.bin');
  t.ok(node, 'the server has the file');
  t.equal(node!.head_version, 1, 'version 1');
  t.equal(node!.size, data.length, 'its size');
  t.equal(node!.mode & 0o777, 0o640, 'its mode');
  const { bytes: got, manifest } = await serverBytes(user.client, node!.id);
  t.equal(manifest.version, 1);
  t.ok(manifest.blocks.length > 1, `chunked into ${manifest.blocks.length} blocks`);
  t.ok(got.equals(data), 'the server holds exactly the written bytes');
  t.equal(manifest.mtime, during.mtime, 'the version carries the mtime the mount showed');
  t.equal(node!.mtime, during.mtime, 'so does the node');
  t.same(await stagingFiles(h), [], 'the staging file is gone');
  t.equal(h.cache.stats().reservedBytes, 0, 'the cache reservation of the dirty data is given back');
  t.same(await readAll(h.vfs, '/a.bin'), data, 'committed content reads back through the manifest');
});

t.test('readdir returns names and stats; getattr of a file being written shows the written size', async (t) => {
  const { h } = await setup(t);
  await h.vfs.mkdir('/docs', 0o750);
  await writeAll(h.vfs, '/docs/one.txt', Buffer.from('one'), { create: true });
  await writeAll(h.vfs, '/two.bin', bytes(100 * KiB), { create: true });
  const fh = await h.vfs.create('/open.txt', 0o644);
  await h.vfs.write(fh, Buffer.from('12345'), 5, 0);
  await h.vfs.write(fh, Buffer.from('6789'), 4, 5);

  const root = await h.vfs.readdir('/');
  const byName = Object.fromEntries(root.names.map((n, i) => [n, root.stats[i]!]));
  t.same(root.names.slice().sort(), ['docs', 'open.txt', 'two.bin'], 'names');
  t.equal(byName.docs!.mode & fsc.S_IFMT, fsc.S_IFDIR, 'a folder is a directory');
  t.equal(byName.docs!.mode & 0o777, 0o750, 'with its mode');
  t.equal(byName['two.bin']!.mode & fsc.S_IFMT, fsc.S_IFREG, 'a file is a regular file');
  t.equal(byName['two.bin']!.size, 100 * KiB, 'queued file: its size');
  t.equal(byName['open.txt']!.size, 9, 'file being written: the written size');
  t.equal((await h.vfs.getattr('/open.txt')).size, 9, 'getattr agrees');
  await h.vfs.release(fh);
  await drained(h.queue);
  const after = await h.vfs.readdir('/');
  t.same(after.stats.map((s) => s.size), after.names.map((n) => ({ docs: 4096, 'open.txt': 9, 'two.bin': 100 * KiB })[n]), 'sizes after the commits');
  t.same((await h.vfs.readdir('/docs')).names, ['one.txt'], 'a sub-folder lists its children');
});

t.test('open for read pins the version: a reader opened before a second commit keeps reading the old bytes', async (t) => {
  const { h, user } = await setup(t);
  const v1 = bytes(300 * KiB);
  const v2 = bytes(300 * KiB);
  await writeAll(h.vfs, '/f.bin', v1, { create: true });
  await drained(h.queue);
  const reader = await h.vfs.open('/f.bin', fsc.O_RDONLY);
  t.same(await readFh(h.vfs, reader, 1000), v1.subarray(0, 1000), 'reads version 1');

  await writeAll(h.vfs, '/f.bin', v2);
  await drained(h.queue);
  const node = await serverChild(user.client, 'f.bin');
  t.equal(node!.head_version, 2, 'version 2 is committed');
  t.ok((await readFh(h.vfs, reader, v1.length + 1)).equals(v1), 'the earlier reader still sees all of version 1');
  await h.vfs.release(reader);
  t.ok((await readAll(h.vfs, '/f.bin')).equals(v2), 'a reader opened now sees version 2');
});

// The errno of every refused call (ENOENT, EEXIST, ENOTEMPTY, EISDIR, ENOTDIR, EINVAL…) and that it
// changes nothing on the server: the conformance suite, test/conformance/cases/errors.ts, on this
// Vfs (test/conformance/vfs.test.ts) and on a real mount. What only the Vfs can be asked stays here.
t.test('the root cannot be removed or renamed (EBUSY), and the refusal changes nothing on the server', async (t) => {
  const { h } = await setup(t);
  await h.vfs.mkdir('/kept', 0o755);
  await drained(h.queue);
  for (const [what, call] of [
    ['rmdir of the root', () => h.vfs.rmdir('/')],
    ['rename of the root', () => h.vfs.rename('/', '/x')],
  ] as const) {
    const before = await backend.snapshot();
    await fails(t, call(), 'EBUSY', what);
    t.equal(await backend.snapshot(), before, `${what}: the server is unchanged`);
  }
  t.same((await h.vfs.readdir('/')).names, ['kept'], 'the tree is as it was');
});

t.test('rename of a file over a file keeps the destination history (versions 1, 2 on its id)', async (t) => {
  const { h, user } = await setup(t);
  const a = bytes(40 * KiB);
  const b = bytes(50 * KiB);
  await writeAll(h.vfs, '/a', a, { create: true });
  await writeAll(h.vfs, '/b', b, { create: true });
  await drained(h.queue);
  const aId = (await serverChild(user.client, 'a'))!.id;
  const bId = (await serverChild(user.client, 'b'))!.id;

  await h.vfs.rename('/a', '/b');
  t.same((await h.vfs.readdir('/')).names, ['b'], 'only the destination is listed');
  t.ok((await readAll(h.vfs, '/b')).equals(a), 'it shows the source bytes');
  const live = await user.client.allChildren((await user.client.root()).id);
  t.same(live.map((c) => [c.name, c.id]), [['b', bId]], 'the server keeps the destination node');
  const versions = (await user.client.versions(bId)).versions.map((v) => v.version).sort();
  t.same(versions, [1, 2], 'its history: versions 1 and 2');
  t.ok((await serverBytes(user.client, bId, 1)).bytes.equals(b), 'version 1 is the old destination');
  t.ok((await serverBytes(user.client, bId, 2)).bytes.equals(a), 'version 2 is the source');
  t.not((await user.client.node(aId)).deleted_at, null, 'the source node went to the trash');

  // The editor pattern: write a temp file, rename it over right away (its commit still queued).
  const c = bytes(60 * KiB);
  await writeAll(h.vfs, '/b.tmp', c, { create: true });
  await h.vfs.rename('/b.tmp', '/b');
  await drained(h.queue);
  t.same((await user.client.versions(bId)).versions.map((v) => v.version).sort(), [1, 2, 3], 'temp renamed over: version 3 on the same id');
  t.ok((await serverBytes(user.client, bId)).bytes.equals(c), 'with the temp file bytes');
  t.same((await h.vfs.readdir('/')).names, ['b']);
  t.ok((await readAll(h.vfs, '/b')).equals(c));
});

t.test("git's lock-file pattern before anything is sent: temp files renamed over a file twice, then one removed — the server ends with exactly what the mount shows", async (t) => {
  const faults = new Faults();
  const { h, user } = await setup(t, { wrapClient: faults.wrap });
  await writeAll(h.vfs, '/index', Buffer.from('v1'), { create: true });
  await writeAll(h.vfs, '/gone', Buffer.from('g1'), { create: true });
  await writeAll(h.vfs, '/left', Buffer.from('l1'), { create: true });
  await drained(h.queue);
  const index = (await serverChild(user.client, 'index'))!;
  const gone = (await serverChild(user.client, 'gone'))!;
  const left = (await serverChild(user.client, 'left'))!;
  // Nothing is sent meanwhile: every lock file is made, renamed over and forgotten before the server hears of it.
  faults.hold('create');
  await writeAll(h.vfs, '/index.lock', Buffer.from('v2'), { create: true });
  await faults.waiting('create');
  await writeAll(h.vfs, '/next.lock', Buffer.from('v3'), { create: true });
  await h.vfs.rename('/index.lock', '/index');
  await writeAll(h.vfs, '/index.lock', Buffer.from('v4 the last'), { create: true });
  await h.vfs.rename('/next.lock', '/gone');
  await h.vfs.rename('/index.lock', '/index');
  await h.vfs.unlink('/gone');
  // Replaced, then the one that replaced it moves on and is itself replaced at its new name.
  await writeAll(h.vfs, '/a.tmp', Buffer.from('a'), { create: true });
  await h.vfs.rename('/a.tmp', '/left');
  await h.vfs.rename('/left', '/moved');
  await writeAll(h.vfs, '/b.tmp', Buffer.from('b, the last'), { create: true });
  await h.vfs.rename('/b.tmp', '/moved');
  faults.open('create');
  await drained(h.queue);
  t.same((await h.vfs.readdir('/')).names.sort(), ['index', 'moved'], 'the mount shows two files');
  t.equal((await readAll(h.vfs, '/moved')).toString(), 'b, the last');
  const moved = await serverChild(user.client, 'moved');
  t.equal(moved && (await serverBytes(user.client, moved.id)).bytes.toString(), 'b, the last', 'the server: the last file at the name it was moved to');
  t.not((await user.client.node(left.id)).deleted_at, null, 'and the file replaced where the name was left is in the trash');
  t.equal((await readAll(h.vfs, '/index')).toString(), 'v4 the last');
  const now = await serverChild(user.client, 'index');
  t.equal(now?.id, index.id, 'the server: the same node (its history kept)');
  t.equal(now && (await serverBytes(user.client, now.id)).bytes.toString(), 'v4 the last', 'holding the last content');
  t.same((await user.client.allChildren((await user.client.root()).id)).map((c) => c.name).sort(), ['index', 'moved'], 'and nothing else: the file a lock file replaced before it was removed is gone too');
  t.not((await user.client.node(gone.id)).deleted_at, null, 'it is in the trash');
});

t.test('rename of a folder with children moves the whole subtree (also with a child commit queued)', async (t) => {
  const { h, user } = await setup(t);
  await h.vfs.mkdir('/d', 0o755);
  await h.vfs.mkdir('/d/sub', 0o755);
  const x = bytes(30 * KiB);
  const y = Buffer.from('deep');
  await writeAll(h.vfs, '/d/sub/y', y, { create: true });
  await drained(h.queue);
  await writeAll(h.vfs, '/d/x', x, { create: true }); // still queued during the rename
  const dId = (await serverChild(user.client, 'd'))!.id;

  await h.vfs.rename('/d', '/e');
  await fails(t, h.vfs.getattr('/d'), 'ENOENT', 'the old path');
  t.same((await h.vfs.readdir('/e')).names.sort(), ['sub', 'x'], 'children under the new name');
  t.same(await readAll(h.vfs, '/e/sub/y'), y, 'a grandchild reads');
  t.ok((await readAll(h.vfs, '/e/x')).equals(x), 'the queued child reads');
  await drained(h.queue);
  const e = await serverChild(user.client, 'e');
  t.equal(e?.id, dId, 'the server renamed the same folder node');
  t.equal(await serverChild(user.client, 'd'), undefined, 'no "d" left on the server');
  const xNode = await serverChild(user.client, 'x', dId);
  t.ok(xNode && (await serverBytes(user.client, xNode.id)).bytes.equals(x), 'the child committed in the moved folder');

  await h.vfs.rename('/e/sub', '/sub2');
  t.same((await h.vfs.readdir('/')).names.sort(), ['e', 'sub2'], 'moved to another folder');
  t.same(await readAll(h.vfs, '/sub2/y'), y);
  await drained(h.queue);
  t.ok(await serverChild(user.client, 'y', (await serverChild(user.client, 'sub2'))!.id), 'the server agrees');
});

t.test('unlink drops a queued commit: nothing is committed after', async (t) => {
  const faults = new Faults();
  const logs = logWatcher();
  const { h, user } = await setup(t, { wrapClient: faults.wrap, retryMs: 60_000, log: logs.log });
  const versionsOf = async (id: string) => (await backend.db('versions').where({ node_id: id }).count<{ n: number }[]>({ n: '*' }))[0]!.n;

  // In flight: the commit is past chunking, held before it reaches the server.
  faults.hold('checkBlocks');
  await writeAll(h.vfs, '/u1', bytes(100 * KiB), { create: true });
  await faults.waiting('checkBlocks');
  const u1 = h.tree.child(h.tree.rootIno, 'u1')!.sid!;
  await h.vfs.unlink('/u1');
  faults.open('checkBlocks');
  await drained(h.queue);
  t.equal(Number(await versionsOf(u1)), 0, 'in flight when unlinked: no version was committed');
  t.not((await user.client.node(u1)).deleted_at, null, 'the node is in the trash');

  // Not started: the first attempt failed, the retry waits on its backoff.
  faults.offline.add('checkBlocks');
  await writeAll(h.vfs, '/u2', bytes(100 * KiB), { create: true });
  // The file is on the server (its create went first); the commit of its content failed and waits.
  await logs.until((l) => l.startsWith('commit of') && l.includes('failed'));
  const u2 = h.tree.child(h.tree.rootIno, 'u2')!.sid!;
  t.equal(h.queue.pendingCount, 1, 'the commit waits for its retry');
  await h.vfs.unlink('/u2');
  faults.offline.delete('checkBlocks');
  await drained(h.queue);
  t.equal(Number(await versionsOf(u2)), 0, 'queued when unlinked: no version was committed');

  t.equal(h.queue.stats.commits, 0, 'the queue committed nothing');
  t.same((await h.vfs.readdir('/')).names, [], 'nothing listed');
  t.same(await stagingFiles(h), [], 'staging files removed');
  t.equal(h.cache.stats().reservedBytes, 0, 'reservations given back');
});

t.test('truncate: shorter, longer (zeros), to zero; ftruncate on an open handle', async (t) => {
  const { h, user } = await setup(t);
  const data = bytes(200 * KiB);
  await writeAll(h.vfs, '/t', data, { create: true });
  await drained(h.queue);
  const id = (await serverChild(user.client, 't'))!.id;

  await h.vfs.truncate('/t', 1000);
  t.equal((await h.vfs.getattr('/t')).size, 1000, 'the new size shows at once');
  await drained(h.queue);
  let s = await serverBytes(user.client, id);
  t.equal(s.manifest.version, 2);
  t.ok(s.bytes.equals(data.subarray(0, 1000)), 'shortened: the first 1000 bytes');

  await h.vfs.truncate('/t', 5000);
  await drained(h.queue);
  s = await serverBytes(user.client, id);
  t.ok(s.bytes.equals(Buffer.concat([data.subarray(0, 1000), Buffer.alloc(4000)])), 'extended with zeros');

  const fh = await h.vfs.open('/t', fsc.O_RDWR);
  await h.vfs.ftruncate(fh, 10);
  await h.vfs.write(fh, Buffer.from('XY'), 2, 10);
  t.equal((await h.vfs.getattr('/t')).size, 12);
  await h.vfs.release(fh);
  await drained(h.queue);
  s = await serverBytes(user.client, id);
  t.ok(s.bytes.equals(Buffer.concat([data.subarray(0, 10), Buffer.from('XY')])), 'ftruncate then write');

  await h.vfs.truncate('/t', 0);
  await drained(h.queue);
  s = await serverBytes(user.client, id);
  t.equal(s.manifest.size, 0, 'truncated to zero');
  t.same(s.manifest.blocks, [], 'an empty version has no blocks');
  t.equal(s.manifest.version, 5, 'one version per truncate');
});

t.test('utimens sets the server mtime: idle file, file open, right after release, while the commit is in flight', async (t) => {
  const faults = new Faults();
  const { h, user } = await setup(t, { wrapClient: faults.wrap });
  const T = Date.UTC(2020, 0, 1, 12, 0, 0);
  const mtimeOf = async (name: string) => (await serverChild(user.client, name))!.mtime;

  await writeAll(h.vfs, '/idle', Buffer.from('idle'), { create: true });
  await drained(h.queue);
  await h.vfs.utimens('/idle', null, T + 1);
  t.equal((await h.vfs.getattr('/idle')).mtime, T + 1, 'shown at once');
  await drained(h.queue);
  t.equal(await mtimeOf('idle'), T + 1, 'idle file: set on the server');
  t.equal((await h.vfs.getattr('/idle')).mtime, T + 1, 'and shown');
  await h.vfs.utimens('/idle', Date.now(), null);
  await drained(h.queue);
  t.equal(await mtimeOf('idle'), T + 1, 'mtime null (UTIME_OMIT) leaves it');

  const fh = await h.vfs.create('/open', 0o644);
  await h.vfs.write(fh, Buffer.from('open'), 4, 0);
  await h.vfs.utimens('/open', null, T + 2);
  await h.vfs.release(fh);
  await drained(h.queue);
  t.equal(await mtimeOf('open'), T + 2, 'set while open (futimens before close): the version carries it');

  await writeAll(h.vfs, '/queued', Buffer.from('queued'), { create: true });
  await h.vfs.utimens('/queued', null, T + 3); // cp -p: close, then utimens
  t.equal((await h.vfs.getattr('/queued')).mtime, T + 3, 'shown at once');
  await drained(h.queue);
  t.equal(await mtimeOf('queued'), T + 3, 'right after release: set on the server once drained');

  faults.hold('commit');
  await writeAll(h.vfs, '/inflight', Buffer.from('inflight'), { create: true });
  await faults.waiting('commit');
  await h.vfs.utimens('/inflight', null, T + 4);
  faults.open('commit');
  await drained(h.queue);
  const inflightId = h.tree.child(h.tree.rootIno, 'inflight')!.sid!;
  const row = await backend.db('nodes').where({ id: inflightId }).first<{ mtime: number }>();
  t.equal(Number(row!.mtime), T + 4, 'the server has it when the drain resolves');
  t.equal(await mtimeOf('inflight'), T + 4, 'commit request already sent: set on the server once drained');
  t.equal((await h.vfs.getattr('/inflight')).mtime, T + 4, 'and shown');

  // A second save queued behind one in flight: both carry the new time.
  faults.hold('commit');
  await writeAll(h.vfs, '/two', Buffer.from('one'), { create: true });
  await faults.waiting('commit');
  await writeAll(h.vfs, '/two', Buffer.from('two'));
  await h.vfs.utimens('/two', null, T + 5);
  faults.open('commit');
  await drained(h.queue);
  t.equal(await mtimeOf('two'), T + 5, 'queued behind an in-flight commit: set on the server once drained');
});

t.test('ENOSPC when the cache cannot hold dirty data; nothing half-written is committed; the room comes back', async (t) => {
  const { h, user } = await setup(t, { cacheSize: 1 * MiB });
  const first = bytes(512 * KiB);
  const fh = await h.vfs.create('/big', 0o644);
  await h.vfs.write(fh, first, first.length, 0);
  await fails(t, h.vfs.write(fh, bytes(768 * KiB), 768 * KiB, first.length), 'ENOSPC', 'a write past the cache bound');
  t.equal((await h.vfs.getattr('/big')).size, first.length, 'the refused write left no trace (size unchanged)');
  await h.vfs.release(fh);
  await drained(h.queue);
  const node = await serverChild(user.client, 'big');
  const s = await serverBytes(user.client, node!.id);
  t.equal((await user.client.versions(node!.id)).versions.length, 1, 'one version');
  t.ok(s.bytes.equals(first), 'it holds exactly the bytes of the accepted write, none of the refused one');
  t.equal(h.cache.stats().reservedBytes, 0, 'nothing stays reserved after the commit');

  // A file larger than the cache written elsewhere opens for an in-place edit here: nothing is
  // downloaded at open, and the edit commits, cutting and uploading only the part around it.
  const other = await anotherDevice(t, user);
  const original = bytes(1200 * KiB);
  await writeAll(other.vfs, '/remote', original, { create: true });
  await drained(other.queue);
  const remote = (await serverChild(user.client, 'remote'))!;
  await h.pull();
  const fetched = h.source.stats.fetches;
  const uploaded = h.queue.stats.uploadedBytes;
  const fh2 = await h.vfs.open('/remote', fsc.O_WRONLY);
  t.equal(h.source.stats.fetches, fetched, 'opening it for writing fetched no block');
  await h.vfs.write(fh2, Buffer.from('EDIT'), 4, 1000);
  await h.vfs.release(fh2);
  await drained(h.queue);
  const edited = Buffer.from(original);
  edited.write('EDIT', 1000);
  t.ok((await serverBytes(user.client, remote.id)).bytes.equals(edited), 'the server has the edit, the rest as it was');
  t.ok(h.queue.stats.uploadedBytes - uploaded <= 2 * CHUNKING.max, `uploaded ${h.queue.stats.uploadedBytes - uploaded} of ${original.length} bytes: the edited blocks, not the file`);
  t.same(await stagingFiles(h), [], 'no staging file left');
  t.equal(h.vfs.openHandles, 0, 'no handle left');
  t.equal(h.cache.stats().reservedBytes, 0, 'no room held');

  // ...while the room freed by the commit is usable again.
  const again = bytes(900 * KiB);
  await writeAll(h.vfs, '/again', again, { create: true, pieces: 3 });
  await drained(h.queue);
  t.ok((await serverBytes(user.client, (await serverChild(user.client, 'again'))!.id)).bytes.equals(again), 'a later file that fits commits');
  t.equal(h.cache.stats().reservedBytes, 0);
});

t.test('an edit of a file never read here: nothing fetched at open, reads of the queued save and a second edit on top show the whole file, the server gets both edits', async (t) => {
  const faults = new Faults();
  const { h, user } = await setup(t, { wrapClient: faults.wrap });
  const other = await anotherDevice(t, user);
  const original = bytes(900 * KiB);
  await writeAll(other.vfs, '/doc.bin', original, { create: true });
  await drained(other.queue);
  await h.pull();
  const expected = Buffer.from(original);

  faults.hold('commit');
  const fetched = h.source.stats.fetches;
  let fh = await h.vfs.open('/doc.bin', fsc.O_WRONLY);
  t.equal(h.source.stats.fetches, fetched, 'open for writing fetched nothing');
  await h.vfs.write(fh, Buffer.from('FIRST'), 5, 300 * KiB);
  expected.write('FIRST', 300 * KiB);
  await h.vfs.release(fh);
  await faults.waiting('commit');
  t.ok((await readAll(h.vfs, '/doc.bin')).equals(expected), 'a reader of the queued save sees the edit over the version');
  // Edited again while the first save is on the wire: the new session starts from the queued one.
  fh = await h.vfs.open('/doc.bin', fsc.O_RDWR);
  await h.vfs.write(fh, Buffer.from('SECOND'), 6, 800 * KiB);
  expected.write('SECOND', 800 * KiB);
  t.ok((await readFh(h.vfs, fh, expected.length + 1, 0)).equals(expected), 'the writer reads both edits and the version around them');
  await h.vfs.release(fh);
  faults.open('commit');
  await drained(h.queue);
  const node = (await serverChild(user.client, 'doc.bin'))!;
  t.equal(node.head_version, 3, 'two new versions');
  t.ok((await serverBytes(user.client, node.id)).bytes.equals(expected), 'the server has both edits and every other byte');
  t.same(await stagingFiles(h), [], 'no staging file left');
});

t.test('a fetch that fails gives EIO promptly: server gone, server hung; other calls are not stalled', async (t) => {
  const own = await startTestBackend('sqlite', { chunking: CHUNKING });
  let ownClosed = false;
  t.teardown(() => (ownClosed ? undefined : own.close()));
  const faults = new Faults();
  const { h, user } = await setup(t, { wrapClient: faults.wrap, source: { fetchTimeoutMs: 300 } }, own);
  const root = await user.client.root();
  for (const name of ['gone', 'hung']) {
    const f = await user.client.create({ parent_id: root.id, name, kind: 'file' });
    await commitRandomBlocks(user.client, f.id, 0, [20 * KiB, 20 * KiB]);
  }
  t.same((await h.vfs.readdir('/')).names.sort(), ['gone', 'hung']);

  // Hung: the server never answers the block request.
  const hung = await h.vfs.open('/hung', fsc.O_RDONLY);
  faults.hold('getBlock');
  let started = Date.now();
  const read = h.vfs.read(hung, Buffer.alloc(100), 100, 0);
  await faults.waiting('getBlock');
  t.equal((await h.vfs.getattr('/gone')).size, 40 * KiB, 'metadata calls answer while a fetch hangs');
  await fails(t, read, 'EIO', 'read of a block the server does not send');
  t.ok(Date.now() - started < 3000, `EIO after ${Date.now() - started} ms (fetch timeout 300 ms)`);
  faults.open('getBlock');
  // One silent fetch is enough: for a while other reads of uncached blocks fail at once, without
  // a request each (the kernel retries a failed read-ahead page synchronously: it would wait again).
  const calls = faults.count('getBlock');
  const other = await h.vfs.open('/gone', fsc.O_RDONLY);
  await fails(t, h.vfs.read(other, Buffer.alloc(100), 100, 0), 'EIO', 'a read right after a silent fetch');
  t.equal(faults.count('getBlock'), calls, 'made no request');
  await h.vfs.release(other);
  await h.vfs.release(hung);

  // Gone: the server is closed.
  const gone = await h.vfs.open('/gone', fsc.O_RDONLY);
  await own.close();
  ownClosed = true;
  started = Date.now();
  await fails(t, h.vfs.read(gone, Buffer.alloc(100), 100, 0), 'EIO', 'read with the server closed');
  t.ok(Date.now() - started < 3000, `EIO after ${Date.now() - started} ms`);
  await h.vfs.release(gone);
});

t.test('BlockSource: concurrent reads of one uncached block make one fetch', async (t) => {
  const { h, user } = await setup(t);
  const f = await user.client.create({ parent_id: (await user.client.root()).id, name: 'shared', kind: 'file' });
  const [block] = await commitRandomBlocks(user.client, f.id, 0, [100 * KiB]);
  const expected = await user.client.getBlock(block!.hash);

  const readers = await Promise.all([h.vfs.open('/shared', fsc.O_RDONLY), h.vfs.open('/shared', fsc.O_RDONLY)]);
  t.equal(h.source.stats.fetches, 0, 'nothing fetched yet');
  const [r1, r2] = await Promise.all(readers.map((fh) => readFh(h.vfs, fh, 100 * KiB)));
  t.ok(r1!.equals(expected) && r2!.equals(expected), 'both readers get the block');
  t.equal(h.source.stats.fetches, 1, 'one fetch for two concurrent readers');
  await h.source.stored();
  t.ok(h.cache.has(block!.hash), 'the block is cached (its write beside the readers ended)');
  await readFh(h.vfs, readers[0]!, 10, 500);
  t.equal(h.source.stats.fetches, 1, 'a later read is served by the cache');
  for (const fh of readers) await h.vfs.release(fh);

  const direct = await Promise.all([h.source.fetch(block!.hash, block!.size), h.source.fetch(block!.hash, block!.size)]);
  t.equal(h.source.stats.fetches, 2, 'two concurrent fetch() calls also share one request');
  t.ok(direct[0]!.equals(expected) && direct[1]!.equals(expected));
});

t.test('BlockSource: a block whose bytes do not match its hash is refused (EIO) and not cached', async (t) => {
  const { h } = await setup(t);
  const real = randomBlock(4 * KiB);
  let calls = 0;
  const liar = {
    async getBlock() {
      calls++;
      return crypto.randomBytes(4 * KiB); // right size, wrong bytes
    },
  } as unknown as StratusClient;
  const source = new BlockSource(liar, h.cache, h.pool, { attempts: 2 });
  await fails(t, source.get(real.hash, real.bytes.length), 'EIO', 'get of a corrupted block');
  t.equal(calls, 2, 'each attempt refetched');
  t.equal(source.stats.verifyFailures, 2, 'and failed verification');
  t.notOk(h.cache.has(real.hash), 'the wrong bytes never reach the cache');
  const target = Buffer.alloc(16);
  await fails(t, source.readInto(real.hash, real.bytes.length, target, 0, 0, 16), 'EIO', 'readInto of a corrupted block');
  t.same(target, Buffer.alloc(16), 'nothing copied to the reader');

  const truncated = new BlockSource({ getBlock: async () => real.bytes.subarray(0, 100) } as unknown as StratusClient, h.cache, h.pool, { attempts: 1 });
  await fails(t, truncated.get(real.hash, real.bytes.length), 'EIO', 'a short block');
});

t.test('BlockSource: a fetched block reaches its reader before its cache write ends; meanwhile it is served from memory, and fetch() resolves once it is stored', async (t) => {
  const { h } = await setup(t);
  const real = randomBlock(64 * KiB);
  let fetches = 0;
  const server = { getBlock: async () => (fetches++, Buffer.from(real.bytes)) } as unknown as StratusClient;
  // The cache's write of this block waits until the test lets it go.
  let letGo!: () => void;
  const held = new Promise<void>((resolve) => (letGo = resolve));
  const put = h.cache.put.bind(h.cache);
  h.cache.put = async (hash, bytes) => {
    await held;
    return put(hash, bytes);
  };
  const source = new BlockSource(server, h.cache, h.pool);
  const target = Buffer.alloc(100);
  t.equal(await source.readInto(real.hash, real.bytes.length, target, 0, 1000, 100), 100, 'the reader has its bytes while the cache write is held');
  t.ok(target.equals(real.bytes.subarray(1000, 1100)), 'the right bytes');
  t.notOk(h.cache.has(real.hash), 'the cache does not have it yet');
  t.ok((await source.get(real.hash, real.bytes.length)).equals(real.bytes), 'a whole-block load is served from memory meanwhile');
  let stored = false;
  const fetched = source.fetch(real.hash, real.bytes.length).then(() => (stored = h.cache.has(real.hash)));
  t.equal(fetches, 1, 'one request for all of them');
  letGo();
  await fetched;
  t.ok(stored, 'fetch() resolved only once the block was in the cache');
  t.equal(fetches, 1, 'still one request');
});

t.test('kernel cache: names a node leaves not through the kernel are reported (onVacated), those a FUSE call changes are not; the mount\'s own drop of such a name changes nothing, whatever holds it', async (t) => {
  const { h, user } = await setup(t);
  const vacated: string[] = [];
  h.tree.onVacated = (p, kind) => vacated.push(`${kind} ${p}`);
  await h.vfs.mkdir('/dir', 0o755);
  await writeAll(h.vfs, '/dir/a.txt', Buffer.from('a'), { create: true });
  await writeAll(h.vfs, '/b.txt', Buffer.from('b'), { create: true });
  await h.vfs.rename('/dir/a.txt', '/dir/a2.txt');
  await h.vfs.unlink('/b.txt');
  await drained(h.queue);
  t.same(vacated, [], 'renames and unlinks through FUSE: the kernel knows');

  // Elsewhere: the folder is renamed, then deleted.
  const dir = await serverChild(user.client, 'dir');
  await user.client.update(dir!.id, { name: 'renamed' });
  await h.pull();
  t.same(vacated, ['dir /dir'], 'a rename from the feed: the old name');
  await user.client.remove(dir!.id);
  await h.pull();
  t.same(vacated, ['dir /dir', 'dir /renamed'], 'a delete from the feed: only the top of the subtree');

  h.vfs.expectForget.begin('/renamed');
  await h.vfs.rmdir('/renamed');
  h.vfs.expectForget.end('/renamed');
  t.pass('the mount\'s own rmdir of the vacated name succeeds (the kernel then forgets it)');
  await writeAll(h.vfs, '/live.txt', Buffer.from('kept'), { create: true });
  await drained(h.queue);
  h.vfs.expectForget.begin('/live.txt');
  await h.vfs.unlink('/live.txt');
  h.vfs.expectForget.end('/live.txt');
  t.equal((await readAll(h.vfs, '/live.txt')).toString(), 'kept', 'a drop of a name a live node holds succeeds, and the file is still there');
  t.equal(h.log.list().length, 0, 'nothing was queued by the drops');
});

t.test('touch: a new empty file commits version 1 with no blocks', async (t) => {
  const { h, user } = await setup(t);
  const fh = await h.vfs.create('/empty', 0o644);
  await h.vfs.release(fh);
  await drained(h.queue);
  const node = await serverChild(user.client, 'empty');
  t.equal(node!.head_version, 1);
  const m = await user.client.manifest(node!.id);
  t.equal(m.size, 0);
  t.same(m.blocks, []);
  t.same(await readAll(h.vfs, '/empty'), Buffer.alloc(0));
});

t.test('a file still open for writing renamed over another file keeps the writes made after the rename', async (t) => {
  const { h, user } = await setup(t);
  await writeAll(h.vfs, '/dst', Buffer.from('old destination'), { create: true });
  await drained(h.queue);
  const dstId = (await serverChild(user.client, 'dst'))!.id;
  const fh = await h.vfs.create('/src', 0o644);
  await h.vfs.write(fh, Buffer.from('hello '), 6, 0);
  await h.vfs.rename('/src', '/dst');
  await h.vfs.write(fh, Buffer.from('world'), 5, 6);
  await h.vfs.release(fh);
  await drained(h.queue);
  t.same((await h.vfs.readdir('/')).names, ['dst']);
  const live = await serverChild(user.client, 'dst');
  t.equal(live?.id, dstId, 'the destination node');
  t.same((await serverBytes(user.client, dstId)).bytes, Buffer.from('hello world'), 'holds every byte written through the open handle');
  t.same(await readAll(h.vfs, '/dst'), Buffer.from('hello world'));
});

t.test('two opens for writing at once share one staging session: both writes land in one commit', async (t) => {
  const { h, user } = await setup(t);
  const base = bytes(600 * KiB);
  await writeAll(h.vfs, '/shared.bin', base, { create: true });
  await drained(h.queue);
  // Both opens must copy the committed version into staging (a download): they overlap.
  const [a, b] = await Promise.all([h.vfs.open('/shared.bin', fsc.O_WRONLY), h.vfs.open('/shared.bin', fsc.O_WRONLY)]);
  const pa = bytes(10 * KiB);
  const pb = bytes(10 * KiB);
  await h.vfs.write(a, pa, pa.length, 0);
  await h.vfs.write(b, pb, pb.length, 300 * KiB);
  await h.vfs.release(a);
  await h.vfs.release(b);
  await drained(h.queue);
  const want = Buffer.from(base);
  pa.copy(want, 0);
  pb.copy(want, 300 * KiB);
  const node = await serverChild(user.client, 'shared.bin');
  t.equal(node!.head_version, 2, 'one more version, not two competing ones');
  t.ok((await serverBytes(user.client, node!.id)).bytes.equals(want), 'it holds the writes of both descriptors');
  t.same((await user.client.allChildren((await user.client.root()).id)).map((n) => n.name), ['shared.bin'], 'no conflicted copy');
});


// --- close(dup(fd)): a FLUSH on a descriptor that stays open (issue 9, findings 11 and 12) -------

/** Bytes as a short comparable text: runs of one byte ("A×4096+C×4096"), else length and hash. */
function shape(b: Buffer | undefined): string {
  if (!b) return 'nothing';
  const runs: string[] = [];
  for (let i = 0; i < b.length && runs.length <= 8; ) {
    let j = i;
    while (j < b.length && b[j] === b[i]) j++;
    runs.push(`${String.fromCharCode(b[i]!)}×${j - i}`);
    i = j;
  }
  if (runs.length <= 8) return runs.join('+') || 'empty';
  return `${b.length} bytes sha256:${crypto.createHash('sha256').update(b).digest('hex').slice(0, 16)}`;
}

/** What the newest queued entry of `p` holds (the snapshot a close queued), or undefined. */
async function queuedBytes(h: VfsHarness, p: string): Promise<Buffer | undefined> {
  const node = await h.tree.resolve(p);
  const entry = node && h.log.latestContent(node.ino);
  return entry && fs.readFile(entry.staging);
}

/** One FUSE read: the bytes answered for (position, length), as the kernel gets them. */
async function readOnce(h: VfsHarness, fh: number, length: number, position: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  const n = await h.vfs.read(fh, buf, length, position);
  return buf.subarray(0, n);
}

t.test('close(dup(fd)) queues what was written, and the descriptor still reads its own writes (finding 11)', async (t) => {
  const { h, user } = await setup(t);
  const [A, B, C, D] = ['A', 'B', 'C', 'D'].map((c) => Buffer.alloc(4 * KiB, c)) as [Buffer, Buffer, Buffer, Buffer];
  // open(O_RDWR|O_CREAT|O_TRUNC), write 4 KiB of A, close(dup(fd)): a FLUSH; the descriptor stays open.
  const fh = await h.vfs.create('/dup.bin', 0o644);
  await h.vfs.write(fh, A, A.length, 0);
  await h.vfs.flush(fh);
  t.equal(shape(await queuedBytes(h, '/dup.bin')), 'A×4096', 'the close queued what was written so far (invariant 5)');
  t.equal(shape(await readOnce(h, fh, 4 * KiB, 0)), 'A×4096', 'the descriptor reads what it wrote');
  // Another descriptor, opened read-only meanwhile (ext4: it sees every write as it happens).
  const ro = await h.vfs.open('/dup.bin', fsc.O_RDONLY);

  await h.vfs.write(fh, B, B.length, 0);
  t.equal(shape(await readOnce(h, fh, 4 * KiB, 0)), 'B×4096', 'write B at 0, read at 0: B (not the snapshot queued at the close)');
  await h.vfs.write(fh, C, C.length, 4 * KiB);
  t.equal(shape(await readOnce(h, fh, 4 * KiB, 4 * KiB)), 'C×4096', 'write C at 4096, read there: 4096 Cs (not 0 bytes)');
  t.equal(shape(await readOnce(h, ro, 8 * KiB, 0)), 'B×4096+C×4096', 'the read-only descriptor sees the writes too');
  t.equal(shape(await queuedBytes(h, '/dup.bin')), 'A×4096', 'the queued snapshot is not changed by later writes');
  t.equal((await h.vfs.getattr('/dup.bin')).size, 8 * KiB, 'getattr shows the live size');

  // More closes of duplicates, with writes between them: each queues the newer content.
  await h.vfs.flush(fh);
  t.equal(shape(await queuedBytes(h, '/dup.bin')), 'B×4096+C×4096', 'the next close(dup) queues the later writes');
  await h.vfs.flush(fh);
  t.equal(shape(await readOnce(h, fh, 8 * KiB, 0)), 'B×4096+C×4096', 'a FLUSH with nothing new changes nothing');
  await h.vfs.ftruncate(fh, 6 * KiB);
  await h.vfs.write(fh, D, D.length, 6 * KiB);
  const want = 'B×4096+C×2048+D×4096';
  t.equal(shape(await readOnce(h, fh, 16 * KiB, 0)), want, 'truncate and write after the closes: read back exactly');
  t.equal(shape(await readOnce(h, ro, 16 * KiB, 0)), want, 'so does the read-only descriptor');
  await h.vfs.flush(fh);
  await h.vfs.release(fh);
  t.equal(shape(await readOnce(h, ro, 16 * KiB, 0)), want, 'and after the writer is gone');
  await h.vfs.release(ro);
  await drained(h.queue);
  const node = await serverChild(user.client, 'dup.bin');
  t.equal(shape((await serverBytes(user.client, node!.id)).bytes), want, 'the server has the last content');
  t.equal(node!.head_version, 1, 'as one version: what the closes queued while the file was open coalesced');
  t.same(await stagingFiles(h), [], 'no staging file left behind');
  t.equal(h.cache.stats().reservedBytes, 0, 'no cache room held');
});

t.test('close(dup(fd)) during reads across EOF and during writes: no EIO, every read answers what ext4 would (finding 12)', async (t) => {
  const { h, user } = await setup(t);
  const fh = await h.vfs.create('/eof.bin', 0o644);
  let content = bytes(6000);
  await h.vfs.write(fh, content, content.length, 0);
  const errors: string[] = [];
  const wrong: string[] = [];
  const read = async (round: number) => {
    try {
      const got = await readOnce(h, fh, 8 * KiB, 4 * KiB);
      if (!got.equals(content.subarray(4 * KiB))) wrong.push(`round ${round}: ${got.length} bytes (${shape(got)})`);
    } catch (err) {
      errors.push(`round ${round}: read: ${String(err)}`);
    }
  };
  for (let round = 0; round < 30; round++) {
    // A read in flight when the FLUSH arrives (as through FUSE: one at a time), reads that arrive
    // while it queues the content, then several at once around another FLUSH.
    await Promise.all([read(round), h.vfs.flush(fh), read(round)]);
    await Promise.all([read(round), read(round), h.vfs.flush(fh), read(round), read(round)]);
    if (round % 3 === 2) {
      // The descriptor writes new bytes in the range read while a duplicate is closed.
      const next = Buffer.concat([content.subarray(0, 4 * KiB), bytes(6000 - 4 * KiB)]);
      const tail = next.subarray(4 * KiB);
      await Promise.all([
        h.vfs.write(fh, tail, tail.length, 4 * KiB).catch((err: unknown) => void errors.push(`round ${round}: write: ${String(err)}`)),
        h.vfs.flush(fh),
      ]);
      content = next;
    }
  }
  t.same(errors, [], 'no read or write failed (EIO "file closed")');
  t.same(wrong, [], 'every read answered the 1904 bytes after 4096');
  await h.vfs.release(fh);
  await drained(h.queue);
  const node = await serverChild(user.client, 'eof.bin');
  t.equal(shape((await serverBytes(user.client, node!.id)).bytes), shape(content), 'the server has the last content');
  t.same(await stagingFiles(h), [], 'no staging file left behind');
});

t.test('FLUSHes at any time, concurrent with reads, writes and truncates, never change what a descriptor reads', async (t) => {
  const { h, user } = await setup(t);
  // A seeded sequence: the same run every time.
  let seed = 0x2545f491;
  const rand = (n: number) => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const fh = await h.vfs.create('/torture.bin', 0o644);
  const ro = await h.vfs.open('/torture.bin', fsc.O_RDONLY);
  /** A second open for writing, now and then. */
  let w2: number | undefined;
  let model = Buffer.alloc(0);
  const problems: string[] = [];
  const note = (step: number, what: string) => problems.length < 20 && problems.push(`step ${step}: ${what}`);
  const check = async (step: number, name: string, handle: number, want: Buffer) => {
    const pos = rand(want.length + 4 * KiB);
    const len = 1 + rand(64 * KiB);
    try {
      const got = await readOnce(h, handle, len, pos);
      const exp = want.subarray(Math.min(pos, want.length), Math.min(pos + len, want.length));
      if (!got.equals(exp)) note(step, `${name}: read ${len} at ${pos} gave ${got.length} bytes (${shape(got)}), not the ${exp.length} written (${shape(exp)})`);
    } catch (err) {
      note(step, `${name}: read failed: ${String(err)}`);
    }
  };
  const attempt = (step: number, what: string, p: Promise<unknown>) => p.catch((err: unknown) => void note(step, `${what} failed: ${String(err)}`));
  for (let step = 0; step < 200; step++) {
    const writer = w2 !== undefined && rand(2) ? w2 : fh;
    const op = rand(12);
    if (op < 6) {
      const pos = rand(model.length + 8 * KiB);
      const data = bytes(1 + rand(48 * KiB));
      const grown = Buffer.alloc(Math.max(model.length, pos + data.length));
      model.copy(grown);
      data.copy(grown, pos);
      // A write while a duplicate of a descriptor is closed: it lands, and reads back after.
      await Promise.all([attempt(step, 'write', h.vfs.write(writer, data, data.length, pos)), rand(2) ? attempt(step, 'flush', h.vfs.flush(fh)) : undefined]);
      model = grown;
    } else if (op < 7) {
      const size = rand(model.length + 8 * KiB);
      await Promise.all([attempt(step, 'ftruncate', h.vfs.ftruncate(writer, size)), rand(2) ? attempt(step, 'flush', h.vfs.flush(fh)) : undefined]);
      const cut = Buffer.alloc(size);
      model.copy(cut, 0, 0, Math.min(size, model.length));
      model = cut;
    } else if (op < 8) {
      if (w2 === undefined) w2 = await h.vfs.open('/torture.bin', fsc.O_RDWR);
      else {
        await h.vfs.flush(w2);
        await h.vfs.release(w2);
        w2 = undefined;
      }
    } else {
      const want = model;
      const flushes = [h.vfs.flush(fh), ...(w2 !== undefined ? [h.vfs.flush(w2)] : [])];
      await Promise.all([check(step, 'fd', fh, want), check(step, 'read-only fd', ro, want), ...flushes, check(step, 'fd', fh, want), ...(w2 !== undefined ? [check(step, 'second fd', w2, want)] : [])]);
      // Every descriptor was closed once since the last write: all of it is queued (invariant 5).
      const queued = await queuedBytes(h, '/torture.bin');
      if (!queued?.equals(model)) note(step, `queued ${shape(queued)}, written ${shape(model)}`);
    }
  }
  t.same(problems, [], 'every read answered exactly what was written before it; no call failed');
  t.equal(shape(await readOnce(h, fh, model.length + 1, 0)), shape(model), 'the whole file reads back');
  if (w2 !== undefined) await h.vfs.release(w2);
  await h.vfs.release(fh);
  await h.vfs.release(ro);
  await drained(h.queue);
  const node = await serverChild(user.client, 'torture.bin');
  t.equal(shape((await serverBytes(user.client, node!.id)).bytes), shape(model), 'the server has the last content');
  t.same(await stagingFiles(h), [], 'no staging file left behind');
  t.equal(h.cache.stats().reservedBytes, 0, 'no cache room held');
});

t.test('two opens for writing, both closed before either RELEASE arrives: the second close queued everything (invariant 5)', async (t) => {
  const { h, user } = await setup(t);
  const a = await h.vfs.create('/two-opens.txt', 0o644);
  const b = await h.vfs.open('/two-opens.txt', fsc.O_WRONLY);
  await h.vfs.write(a, Buffer.from('written by a, '), 14, 0);
  await h.vfs.write(b, Buffer.from('then by b'), 9, 14);
  // close(a), close(b): two FLUSHes; the kernel sends RELEASE asynchronously, here after both returned.
  await h.vfs.flush(a);
  t.equal((await queuedBytes(h, '/two-opens.txt'))?.toString(), undefined, 'b is still open: nothing queued yet');
  await h.vfs.flush(b);
  t.equal((await queuedBytes(h, '/two-opens.txt'))?.toString(), 'written by a, then by b', 'both closes returned: everything written is queued');
  await h.vfs.release(a);
  await h.vfs.release(b);
  await drained(h.queue);
  const node = await serverChild(user.client, 'two-opens.txt');
  t.equal((await serverBytes(user.client, node!.id)).bytes.toString(), 'written by a, then by b');
  t.equal(node!.head_version, 1, 'one version');
});
