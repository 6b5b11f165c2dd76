import t from 'tap';
import { collectGarbage } from '../../backend/jobs/gc.js';
import { purgeExpired } from '../../backend/jobs/purge.js';
import { StratusClient } from '../../protocol/client.js';
import type { NodeInfo } from '../../protocol/types.js';
import { rejectsWith } from '../helpers/api-assert.js';
import { blockHash, commitRandomBlocks, startTestBackend, stopOwnCluster, testEngines, type TestBackend, type TestUser } from '../helpers/backend.js';

/**
 * Trash as items and retention (DESIGN §3, §5 /v1/trash): `rm -r` of a folder (files first, the
 * folder last) is one trash item and restores whole; what was trashed on its own earlier stays in
 * the trash; a taken name restores disambiguated; purge takes trashed items and old versions out
 * of every listing and feed and leaves their blocks to the GC, which frees them.
 */

t.teardown(stopOwnCluster);

async function childNames(client: StratusClient, id: string): Promise<string[]> {
  return (await client.allChildren(id)).map((c) => c.name).sort();
}

async function child(client: StratusClient, parentId: string, name: string): Promise<NodeInfo | undefined> {
  return (await client.allChildren(parentId)).find((c) => c.name === name);
}

/** What `rm -r` sends for a folder: every file, then the folders bottom-up (rmdir: only if empty). */
async function rmR(client: StratusClient, files: NodeInfo[], folders: NodeInfo[]): Promise<void> {
  for (const f of files) await client.remove(f.id, { ifVersion: f.head_version });
  for (const d of folders) await client.remove(d.id, { ifEmpty: true });
}

for (const engine of testEngines()) {
  t.test(`trash and retention [${engine}]`, async (t) => {
    const backend: TestBackend = await startTestBackend(engine);
    t.teardown(() => backend.close());
    let n = 0;
    const user = (): Promise<TestUser> => backend.addUser(`trash${++n}`);

    t.test('rm -r of a folder is one trash item; restoring it brings the whole subtree back as it was; an item trashed on its own earlier stays', async (t) => {
      const u = await user();
      const root = await u.client.root();
      const projects = await u.client.create({ parent_id: root.id, name: 'Projects', kind: 'dir' });
      const sub = await u.client.create({ parent_id: projects.id, name: 'sub', kind: 'dir' });
      const a = await u.client.create({ parent_id: projects.id, name: 'a.txt', kind: 'file' });
      const b = await u.client.create({ parent_id: sub.id, name: 'b.txt', kind: 'file' });
      const old = await u.client.create({ parent_id: projects.id, name: 'old.txt', kind: 'file' });
      const aBlocks = await commitRandomBlocks(u.client, a.id, 0, [1000, 2000]);
      const bBlocks = await commitRandomBlocks(u.client, b.id, 0, [3000]);
      await commitRandomBlocks(u.client, old.id, 0, [10]);
      // old.txt is deleted on its own first, from another device of the user.
      const other = await u.client.createDevice('phone');
      const phone = new StratusClient({ server: backend.url, token: other.token });
      t.teardown(() => phone.close());
      await phone.remove(old.id);
      const before = (await u.client.changesHead()).cursor;

      await rmR(u.client, [await u.client.node(a.id), await u.client.node(b.id)], [sub, projects]);
      const trash = await u.client.trash();
      t.same(trash.items.map((i) => i.name), ['Projects', 'old.txt'], 'the folder is one item (newest first); the file trashed on its own is another');
      t.match(trash.items[0], { id: projects.id, kind: 'dir', path: '/Projects', size: 6000, files: 2, deleted_by: (await u.client.whoami()).device.name });
      t.match(trash.items[1], { id: old.id, path: '/Projects/old.txt', size: 10, files: 1, deleted_by: 'phone' });

      const restored = await u.client.restore(projects.id);
      t.match(restored, { id: projects.id, name: 'Projects', parent_id: root.id, deleted_at: null });
      t.same(await childNames(u.client, projects.id), ['a.txt', 'sub'], 'a.txt and sub are back; old.txt stays in the trash');
      t.same(await childNames(u.client, sub.id), ['b.txt']);
      t.same((await u.client.manifest(a.id)).blocks, aBlocks, 'a.txt as it was');
      t.same((await u.client.manifest(b.id)).blocks, bBlocks, 'b.txt as it was');
      t.same((await u.client.trash()).items.map((i) => i.name), ['old.txt'], 'only old.txt is left in the trash');
      const feed = await u.client.changes(before);
      for (const node of [projects, sub, a, b]) t.match(feed.changes.find((c) => c.id === node.id), { deleted_at: null }, `the feed brings ${node.name} back live`);
    });

    t.test('restoring onto a name taken meanwhile restores under a disambiguated name; into the nearest live folder when its own is in the trash', async (t) => {
      const u = await user();
      const root = await u.client.root();
      const x1 = await u.client.create({ parent_id: root.id, name: 'x.txt', kind: 'file' });
      await u.client.remove(x1.id);
      await u.client.create({ parent_id: root.id, name: 'x.txt', kind: 'file' });
      t.match(await u.client.restore(x1.id), { name: 'x (restored).txt', parent_id: root.id });
      const x2 = await u.client.create({ parent_id: root.id, name: 'x2', kind: 'dir' });
      const inner = await u.client.create({ parent_id: x2.id, name: 'inner.txt', kind: 'file' });
      await u.client.remove(inner.id);
      await u.client.remove(x2.id);
      t.match(await u.client.restore(inner.id), { name: 'inner.txt', parent_id: root.id }, 'its folder is in the trash: it comes back at the root');
      await rejectsWith(t, u.client.restore(inner.id), 400, 'bad_request');
      await rejectsWith(t, u.client.restore(x2.id, { name: 'x.txt' }), 409, 'exists');
    });

    t.test('purge: trashed items and versions past retention vanish from listings and feeds; the head stays; their blocks are freed by the GC', async (t) => {
      const u = await user();
      const root = await u.client.root();
      const keep = await u.client.create({ parent_id: root.id, name: 'keep.txt', kind: 'file' });
      const v1 = await commitRandomBlocks(u.client, keep.id, 0, [100]);
      const v2 = await commitRandomBlocks(u.client, keep.id, 1, [200]);
      const v3 = await commitRandomBlocks(u.client, keep.id, 2, [300]);
      const gone = await u.client.create({ parent_id: root.id, name: 'gone', kind: 'dir' });
      const inGone = await u.client.create({ parent_id: gone.id, name: 'f.bin', kind: 'file' });
      const goneBlocks = await commitRandomBlocks(u.client, inGone.id, 0, [400]);
      await u.client.remove(gone.id);
      const before = (await u.client.changesHead()).cursor;

      const report = await purgeExpired(backend.db, Date.now() + 1);
      t.ok(report.items >= 1 && report.versions >= 3, `purged ${JSON.stringify(report)}`);
      t.same((await u.client.trash()).items, [], 'the trash is empty');
      await rejectsWith(t, u.client.node(gone.id), 404, 'not_found');
      await rejectsWith(t, u.client.node(inGone.id), 404, 'not_found');
      await rejectsWith(t, u.client.restore(gone.id), 404, 'not_found');
      const feed = await u.client.changes(before);
      t.match(feed.changes.find((c) => c.id === gone.id), { gone: true }, 'a cursor from before the purge sees the item gone');
      t.same((await u.client.versions(keep.id)).versions.map((v) => v.version), [3], 'only the head version of the live file is kept');
      t.same((await u.client.manifest(keep.id)).blocks, v3);
      await rejectsWith(t, u.client.manifest(keep.id, 1), 404, 'not_found');

      const gc = await collectGarbage(backend.db, backend.store, 0);
      t.ok(gc.deleted >= 3, `the GC freed the purged blocks (${JSON.stringify(gc)})`);
      for (const b of [...v1, ...v2, ...goneBlocks]) t.notOk(await backend.store.has(b.hash), `purged block ${b.hash.slice(0, 8)} is gone from the store`);
      const head = await u.client.getBlock(v3[0]!.hash);
      t.equal(blockHash(head), v3[0]!.hash, 'the head\'s block is still there and verifies');
      t.same((await u.client.checkBlocks(v1.map((b) => b.hash))).missing, v1.map((b) => b.hash), 'a freed block is missing for its old uploader: it would be sent again');
    });

    t.test('stratus trash empty: DELETE /v1/trash purges what the caller owns, now', async (t) => {
      const u = await user();
      const root = await u.client.root();
      const f = await u.client.create({ parent_id: root.id, name: 'f', kind: 'file' });
      await u.client.remove(f.id);
      t.same(await u.client.emptyTrash(), { purged: 1 });
      t.same((await u.client.trash()).items, []);
      await rejectsWith(t, u.client.node(f.id), 404, 'not_found');
    });

    t.test('the trash is paged and another user sees nothing of it', async (t) => {
      const u = await user();
      const stranger = await user();
      const root = await u.client.root();
      for (let i = 0; i < 5; i++) await u.client.remove((await u.client.create({ parent_id: root.id, name: `t${i}`, kind: 'file' })).id);
      const first = await u.client.trash({ limit: 3 });
      t.equal(first.items.length, 3);
      t.ok(first.next);
      const second = await u.client.trash({ limit: 3, after: first.next! });
      t.same([...first.items, ...second.items].map((i) => i.name).sort(), ['t0', 't1', 't2', 't3', 't4']);
      t.equal(second.next, null);
      t.same((await stranger.client.trash()).items, [], 'a stranger\'s trash is their own');
      await rejectsWith(t, stranger.client.restore(first.items[0]!.id), 404, 'not_found');
      await rejectsWith(t, u.client.trash({ after: 'garbage' }), 400, 'bad_request');
    });
  });
}
