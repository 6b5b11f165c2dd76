import fs from 'node:fs/promises';
import t, { type Test } from 'tap';
import type { StratusClient } from '../../protocol/client.js';
import { createPgDatabase, stopOwnCluster, testEngines } from '../helpers/backend.js';
import { eventually, mountDrive, remoteNode, remoteTree, startServerProcess, tempDir, treeOf, type Drive } from '../helpers/drive.js';

/*
 * Sharing between three people's drives (issue 11), real `stratus serve` and `stratus mount`
 * processes on SQLite and on PostgreSQL: alice shares a folder with bob (editor) and carol
 * (viewer). The share appears on their drives without remounting; bob's edit reaches alice's and
 * carol's drives; every change carol tries fails with EACCES and changes nothing; bob's delete
 * goes to alice's trash; revoking carol's share takes the folder off her drive live. On
 * PostgreSQL, also across two server processes: a share made through one reaches a drive
 * connected to the other.
 */

t.teardown(stopOwnCluster);

async function rejectsCode(t: Test, p: Promise<unknown>, code: string, what: string): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: NodeJS.ErrnoException) => e,
  );
  t.equal(err?.code, code, `${what}: ${code}`);
}

async function readText(d: Drive, p: string): Promise<string> {
  return fs.readFile(d.p(p), 'utf8');
}

async function shareId(client: StratusClient, p: string): Promise<string> {
  const node = await remoteNode(client, p);
  if (!node) throw new Error(`${p} is not on the server`);
  return node.id;
}

for (const engine of testEngines()) {
  t.test(`three people share a folder through their drives [${engine}]`, async (t) => {
    const db = engine === 'postgres' ? await createPgDatabase() : undefined;
    if (db) t.teardown(() => db.drop());
    const blocks = await tempDir(t, 'blocks');
    const server = await startServerProcess(t, { ...(db && { db: db.url }), blocks });
    const [alice, bob, carol] = [await server.addUser('alice'), await server.addUser('bob'), await server.addUser('carol')];
    const a = await mountDrive(t, server, alice.token, { device: 'alice-laptop', drainTimeout: 5 });
    const b = await mountDrive(t, server, bob.token, { device: 'bob-laptop', drainTimeout: 5 });
    const c = await mountDrive(t, server, carol.token, { device: 'carol-laptop', drainTimeout: 5 });

    await fs.mkdir(a.p('Team'));
    await fs.writeFile(a.p('Team/plan.txt'), 'plan v1');
    await eventually('alice\'s file on the server', () => remoteNode(alice.client, 'Team/plan.txt'), (n) => n?.head_version === 1);
    const team = await shareId(alice.client, 'Team');
    await alice.client.share(team, { user: 'bob', role: 'editor' });
    const carolShare = await alice.client.share(team, { user: 'carol', role: 'viewer' });

    await eventually('the share on bob\'s drive', () => readText(b, 'Team/plan.txt'), (s) => s === 'plan v1');
    await eventually('the share on carol\'s drive', () => readText(c, 'Team/plan.txt'), (s) => s === 'plan v1');
    t.pass('the folder shows at bob\'s and carol\'s roots, live, without remounting');

    await fs.writeFile(b.p('Team/plan.txt'), 'plan v2 by bob');
    await fs.writeFile(b.p('Team/notes.txt'), 'notes by bob');
    for (const [d, who] of [[a, 'alice'], [c, 'carol']] as const) {
      await eventually(`bob's edit on ${who}'s drive`, () => treeOf(d.p('Team')), (tr) => tr['plan.txt'] === 'plan v2 by bob' && tr['notes.txt'] === 'notes by bob');
    }
    t.pass('bob\'s edit and new file reach alice\'s and carol\'s drives');

    const before = await remoteTree(alice.client, 'Team');
    await rejectsCode(t, fs.writeFile(c.p('Team/plan.txt'), 'carol was here'), 'EACCES', 'carol writes');
    await rejectsCode(t, fs.writeFile(c.p('Team/new.txt'), 'x'), 'EACCES', 'carol creates');
    await rejectsCode(t, fs.mkdir(c.p('Team/dir')), 'EACCES', 'carol makes a folder');
    await rejectsCode(t, fs.rename(c.p('Team/plan.txt'), c.p('Team/p.txt')), 'EACCES', 'carol renames');
    await rejectsCode(t, fs.unlink(c.p('Team/plan.txt')), 'EACCES', 'carol deletes');
    await rejectsCode(t, fs.chmod(c.p('Team/plan.txt'), 0o600), 'EACCES', 'carol changes the mode');
    t.equal((await fs.stat(c.p('Team/plan.txt'))).mode & 0o222, 0, 'carol sees no write bits');
    t.same(await remoteTree(alice.client, 'Team'), before, 'carol changed nothing on the server');
    t.same(await treeOf(c.p('Team')), { 'plan.txt': 'plan v2 by bob', 'notes.txt': 'notes by bob' }, 'nor on her drive');

    const notes = await shareId(alice.client, 'Team/notes.txt');
    await fs.unlink(b.p('Team/notes.txt'));
    await eventually('bob\'s delete in alice\'s trash', () => alice.client.node(notes), (n) => n.deleted_at !== null);
    await eventually('bob\'s delete on alice\'s drive', () => fs.readdir(a.p('Team')), (names) => !names.includes('notes.txt'));
    t.pass('bob\'s delete goes to alice\'s trash');

    await alice.client.unshare(team, carolShare.id);
    await eventually('the share gone from carol\'s drive', () => fs.readdir(c.p('')), (names) => !names.includes('Team'));
    t.pass('revoking carol\'s share takes the folder off her drive live');
    t.same(await treeOf(a.p('Team')), { 'plan.txt': 'plan v2 by bob' }, 'alice\'s folder is intact');
  });
}

if (testEngines().includes('postgres')) {
  t.test('two servers on one PostgreSQL: a share made through one reaches a drive connected to the other', async (t) => {
    const db = await createPgDatabase();
    t.teardown(() => db.drop());
    const blocks = await tempDir(t, 'shared-blocks');
    const s1 = await startServerProcess(t, { db: db.url, blocks });
    const s2 = await startServerProcess(t, { db: db.url, blocks });
    const alice = await s1.addUser('alice');
    await s1.addUser('bob');
    const bobDevice = await s2.addDevice('bob', 'bob-laptop');
    const b = await mountDrive(t, s2, bobDevice.token, { device: 'bob-laptop', drainTimeout: 5 });
    const root = await alice.client.root();
    const photos = await alice.client.create({ parent_id: root.id, name: 'Photos', kind: 'dir' });
    await alice.client.create({ parent_id: photos.id, name: 'a.jpg', kind: 'file' });
    await alice.client.share(photos.id, { user: 'bob', role: 'viewer' });
    await eventually('the share on bob\'s drive (server 2)', () => fs.readdir(b.p('Photos')), (names) => names.includes('a.jpg'));
    t.pass('the share crossed servers (LISTEN/NOTIFY hint to bob\'s connection on server 2)');
  });
}
