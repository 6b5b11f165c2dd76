import t from 'tap';
import type { StratusClient } from '../../protocol/client.js';
import type { ChangeEntry, NodeInfo } from '../../protocol/types.js';
import { onCommitted } from '../../backend/services/journal.js';
import { rejectsWith } from '../helpers/api-assert.js';
import { commitRandomBlocks, connectEvents, startTestBackend, stopOwnCluster, testEngines, type TestBackend, type TestUser } from '../helpers/backend.js';

/**
 * Sharing at the server (DESIGN §3, §4 invariants 4, 8, 9, §5 shares): roles hold on every route,
 * a share shows in the grantee's tree and feed, revoking and moving out take things out of view,
 * and nothing outside a share leaks to its grantees.
 */

t.teardown(stopOwnCluster);

/** Every change after `cursor` (all pages) and the cursor after them. */
async function feed(client: StratusClient, cursor: string | undefined): Promise<{ changes: ChangeEntry[]; cursor: string }> {
  const changes: ChangeEntry[] = [];
  for (;;) {
    const page = await client.changes(cursor);
    changes.push(...page.changes);
    cursor = page.cursor;
    if (!page.has_more) return { changes, cursor };
  }
}

async function child(client: StratusClient, parentId: string, name: string): Promise<NodeInfo | undefined> {
  return (await client.children(parentId)).children.find((c) => c.name === name);
}

for (const engine of testEngines()) {
  t.test(`shares [${engine}]`, async (t) => {
    const backend: TestBackend = await startTestBackend(engine);
    t.teardown(() => backend.close());
    let n = 0;
    const trio = async (): Promise<[TestUser, TestUser, TestUser]> => {
      n++;
      return [await backend.addUser(`alice${n}`), await backend.addUser(`bob${n}`), await backend.addUser(`carol${n}`)];
    };

    t.test('an editor and a viewer: the share shows at their roots, roles hold on every change, an editor\'s delete goes to the owner\'s trash', async (t) => {
      const [alice, bob, carol] = await trio();
      const aRoot = await alice.client.root();
      const team = await alice.client.create({ parent_id: aRoot.id, name: 'Team', kind: 'dir' });
      const plan = await alice.client.create({ parent_id: team.id, name: 'plan.txt', kind: 'file' });
      const blocks = await commitRandomBlocks(alice.client, plan.id, 0, [1000]);
      const bobStart = (await bob.client.changesHead()).cursor;

      const grant = await alice.client.share(team.id, { user: bob.name, role: 'editor' });
      t.match(grant, { node_id: team.id, role: 'editor', user: bob.name, owner: alice.name, name: 'Team' });
      await alice.client.share(team.id, { user: carol.name, role: 'viewer' });

      const bRoot = await bob.client.root();
      const entry = await child(bob.client, bRoot.id, 'Team');
      t.match(entry, { id: team.id, parent_id: bRoot.id, role: 'editor' }, 'bob sees the share at his root, as editor');
      const seen = await feed(bob.client, bobStart);
      t.match(seen.changes.find((c) => c.id === team.id), { parent_id: bRoot.id, name: 'Team', role: 'editor' }, 'and his feed brings it');
      t.same((await bob.client.getBlock(blocks[0]!.hash)).length, 1000, 'bob reads the blocks of a shared file');

      // bob edits; alice sees it.
      const note = await bob.client.create({ parent_id: team.id, name: 'note.txt', kind: 'file' });
      await commitRandomBlocks(bob.client, note.id, 0, [10]);
      t.match(await alice.client.node(note.id), { parent_id: team.id, head_version: 1, role: 'owner' }, 'alice sees bob\'s file, as its owner');

      // carol may only read.
      t.match(await carol.client.node(plan.id), { role: 'viewer' });
      const before = await backend.snapshot();
      await rejectsWith(t, carol.client.create({ parent_id: team.id, name: 'x', kind: 'file' }), 403, 'forbidden', 'create');
      await rejectsWith(t, carol.client.commit(plan.id, { base_version: 1, blocks: [], size: 0 }), 403, 'forbidden', 'write');
      await rejectsWith(t, carol.client.update(plan.id, { name: 'y' }), 403, 'forbidden', 'rename');
      await rejectsWith(t, carol.client.update(plan.id, { mode: 0o600 }), 403, 'forbidden', 'chmod');
      await rejectsWith(t, carol.client.remove(plan.id), 403, 'forbidden', 'delete');
      await rejectsWith(t, carol.client.share(team.id, { user: bob.name, role: 'owner' }), 403, 'forbidden', 'share');
      t.equal(await backend.snapshot(), before, 'the viewer\'s refused changes changed nothing');

      // bob's delete goes to alice's trash: the node is hers, deleted, and restorable by her.
      await bob.client.remove(plan.id);
      const trashed = await alice.client.node(plan.id);
      t.type(trashed.deleted_at, 'string', 'deleted');
      t.equal((await alice.client.restore(plan.id)).deleted_at, null, 'alice restores it');
    });

    t.test('a grantee renames and removes their entry for themselves only; a clash gets "(from OWNER)"', async (t) => {
      const [alice, bob] = await trio();
      const aRoot = await alice.client.root();
      const bRoot = await bob.client.root();
      await bob.client.create({ parent_id: bRoot.id, name: 'Photos', kind: 'dir' });
      const photos = await alice.client.create({ parent_id: aRoot.id, name: 'Photos', kind: 'dir' });
      await alice.client.create({ parent_id: photos.id, name: 'a.jpg', kind: 'file' });
      await alice.client.share(photos.id, { user: bob.name, role: 'viewer' });
      const entry = await child(bob.client, bRoot.id, `Photos (from ${alice.name})`);
      t.equal(entry?.id, photos.id, 'disambiguated at bob\'s root');
      await rejectsWith(t, bob.client.create({ parent_id: bRoot.id, name: `Photos (from ${alice.name})`, kind: 'dir' }), 409, 'exists', 'the entry\'s name is taken in bob\'s root');

      const renamed = await bob.client.update(photos.id, { name: 'Family' });
      t.match(renamed, { name: 'Family', parent_id: bRoot.id });
      t.equal((await alice.client.node(photos.id)).name, 'Photos', 'alice\'s folder keeps its name');
      const sub = await bob.client.create({ parent_id: bRoot.id, name: 'sub', kind: 'dir' });
      t.match(await bob.client.update(photos.id, { parent_id: sub.id }), { parent_id: sub.id }, 'a viewer moves his own entry within his tree');
      await rejectsWith(t, bob.client.update(photos.id, { parent_id: aRoot.id }), 404, 'not_found', 'but not into alice\'s tree');

      const cursor = (await bob.client.changesHead()).cursor;
      await bob.client.remove(photos.id);
      t.equal(await child(bob.client, sub.id, 'Family'), undefined, 'gone from bob\'s tree');
      t.match(await alice.client.node(photos.id), { deleted_at: null }, 'alice\'s folder is untouched');
      t.equal((await alice.client.children(photos.id)).children.length, 1, 'with its file');
      const after = await feed(bob.client, cursor);
      t.match(after.changes.find((c) => c.id === photos.id), { gone: true, name: '' }, 'bob\'s feed says gone');
      await rejectsWith(t, bob.client.node(photos.id), 404, 'not_found', 'and he can no longer see it');
    });

    t.test('revoking, and moving a node out of a share, take it out of the grantee\'s view everywhere (invariant 8)', async (t) => {
      const [alice, bob] = await trio();
      const aRoot = await alice.client.root();
      const priv = await alice.client.create({ parent_id: aRoot.id, name: 'Private', kind: 'dir' });
      const team = await alice.client.create({ parent_id: aRoot.id, name: 'Team', kind: 'dir' });
      const doc = await alice.client.create({ parent_id: team.id, name: 'doc', kind: 'file' });
      const [block] = await commitRandomBlocks(alice.client, doc.id, 0, [777]);
      const grant = await alice.client.share(team.id, { user: bob.name, role: 'editor' });
      const start = (await feed(bob.client, undefined)).cursor;
      t.equal((await bob.client.getBlock(block!.hash)).length, 777);

      await alice.client.update(doc.id, { parent_id: priv.id, name: 'secret' });
      const moved = await feed(bob.client, start);
      t.same(moved.changes.filter((c) => c.id === doc.id), [{ ...moved.changes.find((c) => c.id === doc.id)!, gone: true, name: '', parent_id: null }], 'the moved file comes as gone, nothing of where it went');
      t.notOk(JSON.stringify(moved.changes).includes(priv.id), 'the private folder\'s id never shows');
      await rejectsWith(t, bob.client.node(doc.id), 404, 'not_found', 'node');
      await rejectsWith(t, bob.client.versions(doc.id), 404, 'not_found', 'versions');
      await rejectsWith(t, bob.client.getBlock(block!.hash), 404, 'not_found', 'its block');
      await rejectsWith(t, bob.client.children(priv.id), 404, 'not_found', 'the private folder');
      t.same(await bob.client.checkBlocks([block!.hash]), { missing: [block!.hash] }, 'a check does not tell he could have read it');

      // Moved back in: visible again.
      await alice.client.update(doc.id, { parent_id: team.id, name: 'doc' });
      t.match(await bob.client.node(doc.id), { parent_id: team.id, name: 'doc' });

      const before = (await feed(bob.client, moved.cursor)).cursor;
      await alice.client.unshare(team.id, grant.id);
      const revoked = await feed(bob.client, before);
      t.match(revoked.changes.find((c) => c.id === team.id), { gone: true }, 'revoked: the share\'s root comes as gone');
      await rejectsWith(t, bob.client.node(team.id), 404, 'not_found', 'after revocation');
      await rejectsWith(t, bob.client.node(doc.id), 404, 'not_found', 'nothing under it either');
      t.same((await bob.client.shares()).shared_with_me, []);
      const bRoot = await bob.client.root();
      t.same((await bob.client.children(bRoot.id)).children, [], 'his root is empty');
    });

    t.test('events: a grantee is in the audience of changes in the share, never of the owner\'s other folders (invariant 8)', async (t) => {
      const [alice, bob] = await trio();
      const aRoot = await alice.client.root();
      const priv = await alice.client.create({ parent_id: aRoot.id, name: 'Private', kind: 'dir' });
      const team = await alice.client.create({ parent_id: aRoot.id, name: 'Team', kind: 'dir' });
      await alice.client.share(team.id, { user: bob.name, role: 'viewer' });
      // Who the notify bus hints, per committed mutation (heard before the request returns).
      let heard: number[][] = [];
      const stop = onCommitted(backend.db, ({ hints }) => heard.push(hints.flatMap((h) => h.userIds)));
      t.teardown(stop);
      for (let i = 0; i < 3; i++) await alice.client.create({ parent_id: priv.id, name: `p${i}`, kind: 'file' });
      await alice.client.update((await alice.client.create({ parent_id: priv.id, name: 'q', kind: 'file' })).id, { name: 'q2' });
      t.same(heard, Array.from({ length: 5 }, () => [alice.id]), 'changes in alice\'s own folders: alice alone');
      heard = [];
      await alice.client.create({ parent_id: team.id, name: 'shared', kind: 'file' });
      t.same(heard.map((u) => u.sort()), [[alice.id, bob.id].sort()], 'a change in the share: alice and bob');
      const events = await connectEvents(backend.url, bob.token);
      t.teardown(() => events.close());
      t.equal(await events.waitFor(0), 0, 'bob\'s connection is ready');
      await alice.client.create({ parent_id: team.id, name: 'shared2', kind: 'file' });
      t.ok((await events.waitFor(1)) >= 1, 'and his connection gets the hint');
    });

    t.test('shares inside or around a shared folder are refused (409); only owners share', async (t) => {
      const [alice, bob, carol] = await trio();
      const aRoot = await alice.client.root();
      const outer = await alice.client.create({ parent_id: aRoot.id, name: 'Outer', kind: 'dir' });
      const inner = await alice.client.create({ parent_id: outer.id, name: 'Inner', kind: 'dir' });
      await alice.client.share(inner.id, { user: bob.name, role: 'editor' });
      await rejectsWith(t, alice.client.share(outer.id, { user: carol.name, role: 'viewer' }), 409, 'nested_share', 'around a share');
      const deep = await alice.client.create({ parent_id: inner.id, name: 'Deep', kind: 'dir' });
      await rejectsWith(t, alice.client.share(deep.id, { user: carol.name, role: 'viewer' }), 409, 'nested_share', 'inside a share');
      await rejectsWith(t, bob.client.share(deep.id, { user: carol.name, role: 'viewer' }), 403, 'forbidden', 'an editor cannot share');
      await rejectsWith(t, alice.client.share(aRoot.id, { user: carol.name, role: 'viewer' }), 400, 'bad_request', 'the root');
      const other = await alice.client.create({ parent_id: aRoot.id, name: 'Other', kind: 'dir' });
      await alice.client.share(other.id, { user: carol.name, role: 'editor' });
      await rejectsWith(t, alice.client.update(inner.id, { parent_id: other.id }), 409, 'nested_share', 'a shared folder does not move into another');
      await rejectsWith(t, carol.client.update(other.id, { parent_id: inner.id }), 404, 'not_found', 'nor an entry into a share');
      // An owner-role grantee can share further.
      await alice.client.share(other.id, { user: bob.name, role: 'owner' });
      t.match(await bob.client.share(other.id, { user: carol.name, role: 'viewer' }), { role: 'viewer' }, 'a co-owner changes roles');
      t.match((await alice.client.nodeShares(other.id)).shares.map((s) => [s.user, s.role]), [[carol.name, 'viewer'], [bob.name, 'owner']]);
    });

    t.test('a file moved by an editor from his tree into the share becomes the owner\'s; moved out, it becomes his', async (t) => {
      const [alice, bob] = await trio();
      const aRoot = await alice.client.root();
      const bRoot = await bob.client.root();
      const team = await alice.client.create({ parent_id: aRoot.id, name: 'Team', kind: 'dir' });
      await alice.client.share(team.id, { user: bob.name, role: 'editor' });
      const mine = await bob.client.create({ parent_id: bRoot.id, name: 'draft', kind: 'file' });
      const [b] = await commitRandomBlocks(bob.client, mine.id, 0, [321]);
      await bob.client.update(mine.id, { parent_id: team.id });
      t.match(await alice.client.node(mine.id), { parent_id: team.id, role: 'owner' }, 'alice sees it in her folder');
      t.equal((await alice.client.getBlock(b!.hash)).length, 321, 'and reads its blocks');
      await bob.client.update(mine.id, { parent_id: bRoot.id });
      await rejectsWith(t, alice.client.node(mine.id), 404, 'not_found', 'moved out: alice no longer sees it');
    });
  });
}
