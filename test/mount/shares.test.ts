import crypto from 'node:crypto';
import t from 'tap';
import { startTestBackend, type TestBackend, type TestUser } from '../helpers/backend.js';
import { assembleVfs, drained, restartVfs, fails, readAll, serverBytes, serverChild, tempCacheDir, writeAll, type VfsHarness } from '../helpers/vfs.js';

/**
 * Shares in the drive (DESIGN §3, invariant 6), through the Vfs over a real in-process server:
 * a folder shared with me shows at my root and follows the feed; a viewer's changes fail at once
 * with EACCES and change nothing; removing my entry removes it for me only; a queued change the
 * server refuses after all (role lowered) is kept in my own tree.
 */

let backend: TestBackend;
let n = 0;

t.before(async () => {
  backend = await startTestBackend('sqlite');
});
t.teardown(() => backend?.close());

async function drive(t: Parameters<typeof tempCacheDir>[0], user: TestUser): Promise<VfsHarness> {
  return (await restartable(t, user)).h;
}

/** A drive whose harness `ref.h` a test may replace (a crash and restart); the current one is closed at teardown. */
async function restartable(t: Parameters<typeof tempCacheDir>[0], user: TestUser): Promise<{ h: VfsHarness }> {
  const ref = { h: await assembleVfs({ url: backend.url, token: user.token, cacheDir: await tempCacheDir(t), device: `${user.name}-laptop`, retryMs: 50 }) };
  t.teardown(() => ref.h.close());
  return ref;
}

async function trio(): Promise<[TestUser, TestUser, TestUser]> {
  n++;
  return [await backend.addUser(`alice${n}`), await backend.addUser(`bob${n}`), await backend.addUser(`carol${n}`)];
}

t.test('an editor\'s drive edits the shared folder; a viewer\'s drive refuses every change with EACCES and changes nothing', async (t) => {
  const [alice, bob, carol] = await trio();
  const aRoot = await alice.client.root();
  const team = await alice.client.create({ parent_id: aRoot.id, name: 'Team', kind: 'dir' });
  const bobDrive = await drive(t, bob);
  const carolDrive = await drive(t, carol);
  const aliceDrive = await drive(t, alice);
  await writeAll(aliceDrive.vfs, '/Team/plan.txt', Buffer.from('plan v1'), { create: true });
  await drained(aliceDrive.queue);
  await alice.client.share(team.id, { user: bob.name, role: 'editor' });
  await alice.client.share(team.id, { user: carol.name, role: 'viewer' });
  await bobDrive.pull();
  await carolDrive.pull();
  t.same((await bobDrive.vfs.readdir('/')).names, ['Team'], 'the share shows at bob\'s root after a pull, without remounting');
  t.same(await readAll(carolDrive.vfs, '/Team/plan.txt'), Buffer.from('plan v1'), 'carol reads it');

  await writeAll(bobDrive.vfs, '/Team/notes.txt', Buffer.from('from bob'), { create: true });
  await drained(bobDrive.queue);
  const notes = await serverChild(alice.client, 'notes.txt', team.id);
  t.same((await serverBytes(alice.client, notes!.id)).bytes, Buffer.from('from bob'), 'bob\'s new file is in alice\'s folder');
  await aliceDrive.pull();
  t.same(await readAll(aliceDrive.vfs, '/Team/notes.txt'), Buffer.from('from bob'), 'and on alice\'s drive');

  await carolDrive.pull();
  t.equal((await carolDrive.vfs.getattr('/Team/plan.txt')).mode & 0o222, 0, 'a viewer sees no write bits');
  const before = await backend.snapshot();
  await fails(t, carolDrive.vfs.create('/Team/new.txt', 0o644), 'EACCES', 'create');
  await fails(t, carolDrive.vfs.open('/Team/plan.txt', 1), 'EACCES', 'open for writing');
  await fails(t, carolDrive.vfs.truncate('/Team/plan.txt', 0), 'EACCES', 'truncate');
  await fails(t, carolDrive.vfs.mkdir('/Team/d', 0o755), 'EACCES', 'mkdir');
  await fails(t, carolDrive.vfs.unlink('/Team/plan.txt'), 'EACCES', 'unlink');
  await fails(t, carolDrive.vfs.rename('/Team/plan.txt', '/Team/p2'), 'EACCES', 'rename inside');
  await fails(t, carolDrive.vfs.rename('/Team/plan.txt', '/mine.txt'), 'EACCES', 'rename out');
  await fails(t, carolDrive.vfs.chmod('/Team/plan.txt', 0o600), 'EACCES', 'chmod');
  await fails(t, carolDrive.vfs.utimens('/Team/plan.txt', null, 5_000), 'EACCES', 'utimens');
  t.equal(carolDrive.log.list().length, 0, 'nothing queued');
  t.equal(await backend.snapshot(), before, 'nothing changed on the server');
  t.same((await carolDrive.vfs.readdir('/Team')).names.sort(), ['notes.txt', 'plan.txt'], 'the folder is as it was');
});

t.test('removing my entry removes it for me only; a revoked share leaves my drive on the next pull', async (t) => {
  const [alice, bob, carol] = await trio();
  const aRoot = await alice.client.root();
  const photos = await alice.client.create({ parent_id: aRoot.id, name: 'Photos', kind: 'dir' });
  await alice.client.create({ parent_id: photos.id, name: 'a.jpg', kind: 'file' });
  await alice.client.share(photos.id, { user: bob.name, role: 'editor' });
  const carolShare = await alice.client.share(photos.id, { user: carol.name, role: 'viewer' });
  const bobDrive = await drive(t, bob);
  const carolDrive = await drive(t, carol);
  t.same((await bobDrive.vfs.readdir('/Photos')).names, ['a.jpg']);
  await bobDrive.vfs.rename('/Photos', '/Family');
  await drained(bobDrive.queue);
  t.equal((await alice.client.node(photos.id)).name, 'Photos', 'bob\'s rename is his entry\'s only');
  await bobDrive.vfs.rmdir('/Family');
  await drained(bobDrive.queue);
  t.same((await bobDrive.vfs.readdir('/')).names, [], 'gone from bob\'s drive');
  t.same((await alice.client.children(photos.id)).children.map((c) => c.name), ['a.jpg'], 'alice\'s folder and file are untouched');
  t.same((await bob.client.shares()).shared_with_me, [], 'bob left the share');

  t.same((await carolDrive.vfs.readdir('/')).names, ['Photos']);
  await alice.client.unshare(photos.id, carolShare.id);
  await carolDrive.pull();
  t.same((await carolDrive.vfs.readdir('/')).names, [], 'revoked: gone from carol\'s drive');
});

t.test('a save queued before the role was lowered is kept as a conflicted copy in my own root (invariant 6)', async (t) => {
  const [alice, bob] = await trio();
  const aRoot = await alice.client.root();
  const team = await alice.client.create({ parent_id: aRoot.id, name: 'Team', kind: 'dir' });
  await alice.client.share(team.id, { user: bob.name, role: 'editor' });
  const ref = await restartable(t, bob);
  await writeAll(ref.h.vfs, '/Team/doc.txt', Buffer.from('v1'), { create: true });
  await drained(ref.h.queue);
  const edit = crypto.randomBytes(3000);
  // The role is lowered while bob's edit is made here and not yet sent (the sender stopped; then the mount dies).
  await ref.h.queue.stop();
  await writeAll(ref.h.vfs, '/Team/doc.txt', edit);
  await alice.client.share(team.id, { user: bob.name, role: 'viewer' });
  ref.h = await restartVfs(ref.h, 'crash');
  const again = ref.h;
  await drained(again.queue);
  const names = (await again.vfs.readdir('/')).names;
  const copy = names.find((x) => x.startsWith('doc (conflicted copy'));
  t.ok(copy, `kept in bob's root: ${names.join(', ')}`);
  t.same(await readAll(again.vfs, `/${copy}`), edit, 'with bob\'s bytes');
  const doc = await serverChild(alice.client, 'doc.txt', team.id);
  t.same((await serverBytes(alice.client, doc!.id)).bytes, Buffer.from('v1'), 'alice\'s file is unchanged');
});

t.test('a role changed by the owner holds on my drive after the next pull, for everything of the share already listed', async (t) => {
  const [alice, , carol] = await trio();
  const aRoot = await alice.client.root();
  const team = await alice.client.create({ parent_id: aRoot.id, name: 'Team', kind: 'dir' });
  const sub = await alice.client.create({ parent_id: team.id, name: 'sub', kind: 'dir' });
  await alice.client.create({ parent_id: sub.id, name: 'f.txt', kind: 'file' });
  await alice.client.share(team.id, { user: carol.name, role: 'viewer' });
  const carolDrive = await drive(t, carol);
  t.same((await carolDrive.vfs.readdir('/Team/sub')).names, ['f.txt']);
  await fails(t, carolDrive.vfs.open('/Team/sub/f.txt', 1), 'EACCES', 'as viewer');

  await alice.client.share(team.id, { user: carol.name, role: 'editor' });
  await carolDrive.pull();
  await writeAll(carolDrive.vfs, '/Team/sub/f.txt', Buffer.from('carol edits'));
  await drained(carolDrive.queue);
  const f = await serverChild(alice.client, 'f.txt', sub.id);
  t.same((await serverBytes(alice.client, f!.id)).bytes, Buffer.from('carol edits'), 'raised to editor: her edit reaches alice');

  await alice.client.share(team.id, { user: carol.name, role: 'viewer' });
  await carolDrive.pull();
  await fails(t, carolDrive.vfs.unlink('/Team/sub/f.txt'), 'EACCES', 'lowered to viewer again');
});

t.test('`rm -r` of my entry of a share (unlink and rmdir inside, then the entry) removes it for me and deletes nothing of the owner\'s', async (t) => {
  const [alice, bob] = await trio();
  const aRoot = await alice.client.root();
  const team = await alice.client.create({ parent_id: aRoot.id, name: 'Team', kind: 'dir' });
  const sub = await alice.client.create({ parent_id: team.id, name: 'sub', kind: 'dir' });
  await alice.client.create({ parent_id: sub.id, name: 'f1', kind: 'file' });
  await alice.client.create({ parent_id: team.id, name: 'f2', kind: 'file' });
  await alice.client.create({ parent_id: team.id, name: 'x', kind: 'file' });
  await alice.client.share(team.id, { user: bob.name, role: 'editor' });
  const bobDrive = await drive(t, bob);

  // One delete of an editor's own accord: it reaches the server once the burst is quiet (here: the drain).
  await bobDrive.vfs.unlink('/Team/x');
  await drained(bobDrive.queue);
  t.equal(await serverChild(alice.client, 'x', team.id), undefined, 'a plain delete inside the share is sent');

  // What `rm -r /Team` does: everything inside first, then the folder.
  t.same((await bobDrive.vfs.readdir('/Team/sub')).names, ['f1']);
  await bobDrive.vfs.unlink('/Team/f2');
  await bobDrive.vfs.unlink('/Team/sub/f1');
  await bobDrive.vfs.rmdir('/Team/sub');
  await bobDrive.vfs.rmdir('/Team');
  await drained(bobDrive.queue);
  t.same((await bobDrive.vfs.readdir('/')).names, [], 'the share is off bob\'s drive');
  t.same((await alice.client.children(team.id)).children.map((c) => c.name), ['f2', 'sub'], 'alice\'s files are all there');
  t.same((await alice.client.children(sub.id)).children.map((c) => c.name), ['f1'], 'also inside the subfolder');
  t.same((await bob.client.shares()).shared_with_me, [], 'bob left the share');
});
