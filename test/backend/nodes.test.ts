import crypto from 'node:crypto';
import t from 'tap';
import type { StratusClient } from '../../protocol/client.js';
import type { NodeInfo } from '../../protocol/types.js';
import { errorCode, raw, rawJson, rejectsWith } from '../helpers/api-assert.js';
import { commitRandomBlocks, startTestBackend, stopOwnCluster, testEngines, type TestBackend, type TestUser } from '../helpers/backend.js';

/**
 * The node tree API (DESIGN §3, §5): root, metadata, paged listings, create, rename, move (with
 * and without replace), trash and restore, attribute changes, and the refusal of every bad input
 * with the documented status and without any change to the database or the block store.
 */

t.teardown(stopOwnCluster);

const MAX_JSON = 2048;

async function childNames(client: StratusClient, dirId: string): Promise<string[]> {
  return (await client.allChildren(dirId)).map((c) => c.name);
}

/** Code-point order of UTF-8 strings: what both engines order names by (byte order of UTF-8). */
function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

for (const engine of testEngines()) {
  t.test(`node tree API [${engine}]`, async (t) => {
    const backend: TestBackend = await startTestBackend(engine, { limits: { max_json_bytes: MAX_JSON } });
    t.teardown(() => backend.close());
    let users = 0;
    const newUser = (): Promise<TestUser> => backend.addUser(`user${++users}`);

    t.test('GET /v1/nodes/root is the caller\'s live root folder and GET /v1/nodes/:id returns the same node', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      t.match(root, { parent_id: null, name: '', kind: 'dir', head_version: 0, size: 0, deleted_at: null });
      t.match(root.id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      t.same(await client.node(root.id), root);
      // A second user has a root of their own.
      const other = await newUser();
      t.not((await other.client.root()).id, root.id);
      t.same(await client.children(root.id), { children: [], next: null });
    });

    t.test('POST /v1/nodes creates files and folders (201) that GET and the listing return', async (t) => {
      const { client, token } = await newUser();
      const root = await client.root();
      const res = await rawJson(backend, 'POST', '/v1/nodes', token, { parent_id: root.id, name: 'docs', kind: 'dir' });
      t.equal(res.status, 201);
      const dir = res.json as NodeInfo;
      t.match(dir, { parent_id: root.id, name: 'docs', kind: 'dir', head_version: 0, size: 0, mode: 0o755, deleted_at: null });
      const file = await client.create({ parent_id: dir.id, name: 'notes.txt', kind: 'file', mtime: 1_700_000_000_000, mode: 0o600 });
      t.match(file, { parent_id: dir.id, name: 'notes.txt', kind: 'file', head_version: 0, size: 0, mtime: 1_700_000_000_000, mode: 0o600, deleted_at: null });
      const plain = await client.create({ parent_id: dir.id, name: 'plain', kind: 'file' });
      t.equal(plain.mode, 0o644, 'a file defaults to mode 0644');
      t.same(await client.node(file.id), file);
      t.same(await client.node(dir.id), dir);
      t.same((await client.children(dir.id)).children, [file, plain].sort((a, b) => byteOrder(a.name, b.name)));
      // Names at the limits of the rules are accepted as given.
      for (const name of ['é'.repeat(127) + 'x', '...', '.hidden', ' spaced ', '日本語.txt']) {
        const n = await client.create({ parent_id: dir.id, name, kind: 'file' });
        t.equal(n.name, name, `accepts ${JSON.stringify(name.slice(0, 12))} (${Buffer.byteLength(name)} bytes)`);
      }
    });

    t.test('children are paged in name order: limit, next cursor, next=null on the last page', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      const dir = await client.create({ parent_id: root.id, name: 'big', kind: 'dir' });
      const names = Array.from({ length: 25 }, (_, i) => ['B', 'a', 'Z', '10', '9', 'ä', '_', 'é', '😀', '\uFF21'][i % 10] + `-${i}`);
      // Created in a shuffled order, so the listing order cannot come from insertion order.
      const shuffled = [...names].sort(() => crypto.randomInt(3) - 1);
      for (const [i, name] of shuffled.entries()) await client.create({ parent_id: dir.id, name, kind: i % 3 === 0 ? 'dir' : 'file' });
      const expected = [...names].sort(byteOrder);
      const p1 = await client.children(dir.id, { limit: 10 });
      t.same(p1.children.map((c) => c.name), expected.slice(0, 10));
      t.equal(p1.next, expected[9], 'next is the cursor after the last entry');
      const p2 = await client.children(dir.id, { limit: 10, after: p1.next! });
      t.same(p2.children.map((c) => c.name), expected.slice(10, 20));
      const p3 = await client.children(dir.id, { limit: 10, after: p2.next! });
      t.same(p3.children.map((c) => c.name), expected.slice(20));
      t.equal(p3.next, null, 'the last page has next=null');
      // A page that ends exactly at the last child also says there is no more.
      const exact = await client.children(dir.id, { limit: 25 });
      t.equal(exact.children.length, 25);
      t.equal(exact.next, null);
      // Everything, without a limit, in the same order; and children carry their parent.
      const all = (await client.children(dir.id)).children;
      t.same(all.map((c) => c.name), expected);
      t.ok(all.every((c) => c.parent_id === dir.id && c.deleted_at === null));
    });

    t.test('children limit 0, negative or non-integer is 400', async (t) => {
      const { client, token } = await newUser();
      const root = await client.root();
      await client.create({ parent_id: root.id, name: 'x', kind: 'file' });
      for (const limit of ['0', '-1', '1.5', 'abc', '']) {
        const res = await raw(backend, 'GET', `/v1/nodes/${root.id}/children?limit=${limit}`, { token });
        t.equal(res.status, 400, `limit=${limit}`);
        t.equal(errorCode(res), 'bad_request', `limit=${limit}`);
      }
      const file = (await client.children(root.id)).children[0]!;
      await rejectsWith(t, client.children(file.id), 409, 'not_a_directory', 'children of a file');
    });

    t.test('PATCH renames and moves a node, keeping its id', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      const a = await client.create({ parent_id: root.id, name: 'a', kind: 'dir' });
      const b = await client.create({ parent_id: root.id, name: 'b', kind: 'dir' });
      const f = await client.create({ parent_id: a.id, name: 'f.txt', kind: 'file' });
      await commitRandomBlocks(client, f.id, 0, [100]);

      const renamed = await client.update(f.id, { name: 'g.txt' });
      t.match(renamed, { id: f.id, parent_id: a.id, name: 'g.txt', head_version: 1, size: 100 });
      t.same(await childNames(client, a.id), ['g.txt']);

      const moved = await client.update(f.id, { parent_id: b.id });
      t.match(moved, { id: f.id, parent_id: b.id, name: 'g.txt', head_version: 1 });
      t.same(await childNames(client, a.id), []);
      t.same(await childNames(client, b.id), ['g.txt']);

      const both = await client.update(f.id, { parent_id: root.id, name: 'h.txt' });
      t.match(both, { id: f.id, parent_id: root.id, name: 'h.txt' });
      t.same(await client.node(f.id), both);
      t.same(await childNames(client, root.id), ['a', 'b', 'h.txt']);
      t.equal((await client.versions(f.id)).versions.length, 1, 'a move adds no version');

      // A folder moves with everything under it.
      const inner = await client.create({ parent_id: a.id, name: 'inner', kind: 'file' });
      await client.update(a.id, { parent_id: b.id });
      t.same(await childNames(client, b.id), ['a']);
      t.equal((await client.node(inner.id)).parent_id, a.id);
      t.same(await childNames(client, a.id), ['inner']);

      // Renaming to its own name is a harmless no-op.
      t.match(await client.update(b.id, { name: 'b' }), { id: b.id, name: 'b', parent_id: root.id });
    });

    t.test('PATCH with replace: a file over a file keeps the destination id and history and gains the source content; the source goes to the trash', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      const dir = await client.create({ parent_id: root.id, name: 'dir', kind: 'dir' });
      const dest = await client.create({ parent_id: dir.id, name: 'doc.txt', kind: 'file', mode: 0o600 });
      const v1 = await commitRandomBlocks(client, dest.id, 0, [300]);
      const v2 = await commitRandomBlocks(client, dest.id, 1, [200, 50]);
      const temp = await client.create({ parent_id: root.id, name: '.doc.txt.swp', kind: 'file', mode: 0o640 });
      const tempBlocks = await commitRandomBlocks(client, temp.id, 0, [123, 77]);

      await rejectsWith(t, client.update(temp.id, { parent_id: dir.id, name: 'doc.txt' }), 409, 'exists', 'without replace');
      const result = await client.update(temp.id, { parent_id: dir.id, name: 'doc.txt', replace: true });
      t.match(result, { id: dest.id, parent_id: dir.id, name: 'doc.txt', kind: 'file', head_version: 3, size: 200, deleted_at: null, mode: 0o640 });
      t.same(await client.node(dest.id), result);

      const history = (await client.versions(dest.id)).versions.map((v) => v.version);
      t.same(history, [3, 2, 1], 'the destination history is kept and grows by one');
      t.same((await client.manifest(dest.id, 1)).blocks, v1);
      t.same((await client.manifest(dest.id, 2)).blocks, v2);
      const head = await client.manifest(dest.id, 3);
      t.same(head.blocks, tempBlocks, 'the new head is the source content');
      t.match(head, { base_version: 2, size: 200 });

      const source = await client.node(temp.id);
      t.not(source.deleted_at, null, 'the source is in the trash');
      t.same(await childNames(client, root.id), ['dir']);
      t.same((await client.children(dir.id)).children.map((c) => c.id), [dest.id]);
    });

    t.test('PATCH with replace: a folder may replace an empty folder (which goes to the trash)', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      const src = await client.create({ parent_id: root.id, name: 'src', kind: 'dir' });
      const child = await client.create({ parent_id: src.id, name: 'child', kind: 'file' });
      const dst = await client.create({ parent_id: root.id, name: 'dst', kind: 'dir' });
      const result = await client.update(src.id, { name: 'dst', replace: true });
      t.match(result, { id: src.id, name: 'dst', parent_id: root.id, deleted_at: null });
      t.not((await client.node(dst.id)).deleted_at, null, 'the replaced folder is in the trash');
      t.same((await client.children(root.id)).children.map((c) => c.id), [src.id]);
      t.same((await client.children(src.id)).children.map((c) => c.id), [child.id]);
    });

    t.test('PATCH with replace refuses a non-empty folder (409 not_empty), a file over a folder and a folder over a file (409), changing nothing', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      const src = await client.create({ parent_id: root.id, name: 'src', kind: 'dir' });
      const full = await client.create({ parent_id: root.id, name: 'full', kind: 'dir' });
      await client.create({ parent_id: full.id, name: 'keep.txt', kind: 'file' });
      const file = await client.create({ parent_id: root.id, name: 'file', kind: 'file' });
      await commitRandomBlocks(client, file.id, 0, [10]);
      const before = await backend.snapshot();
      await rejectsWith(t, client.update(src.id, { name: 'full', replace: true }), 409, 'not_empty', 'folder over non-empty folder');
      t.equal(await backend.snapshot(), before);
      await rejectsWith(t, client.update(file.id, { name: 'src', replace: true }), 409, 'is_a_directory', 'file over folder');
      t.equal(await backend.snapshot(), before);
      await rejectsWith(t, client.update(src.id, { name: 'file', replace: true }), 409, 'not_a_directory', 'folder over file');
      t.equal(await backend.snapshot(), before);
      await rejectsWith(t, client.update(src.id, { name: 'full' }), 409, 'exists', 'without replace onto an existing name');
      await rejectsWith(t, client.update(file.id, { name: 'src', replace: false }), 409, 'exists', 'replace: false onto an existing name');
      t.equal(await backend.snapshot(), before);
    });

    t.test('a folder cannot move into itself or its own descendant (400 invalid_move)', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      const a = await client.create({ parent_id: root.id, name: 'a', kind: 'dir' });
      const b = await client.create({ parent_id: a.id, name: 'b', kind: 'dir' });
      const c = await client.create({ parent_id: b.id, name: 'c', kind: 'dir' });
      const before = await backend.snapshot();
      await rejectsWith(t, client.update(a.id, { parent_id: c.id }), 400, 'invalid_move', 'into a grandchild');
      await rejectsWith(t, client.update(a.id, { parent_id: b.id }), 400, 'invalid_move', 'into a child');
      await rejectsWith(t, client.update(a.id, { parent_id: a.id }), 400, 'invalid_move', 'into itself');
      t.equal(await backend.snapshot(), before);
      // The other direction is an ordinary move.
      t.match(await client.update(c.id, { parent_id: root.id }), { parent_id: root.id });
    });

    t.test('the root folder cannot be renamed, moved or deleted (400 invalid_move)', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      const dir = await client.create({ parent_id: root.id, name: 'dir', kind: 'dir' });
      const before = await backend.snapshot();
      await rejectsWith(t, client.update(root.id, { name: 'renamed' }), 400, 'invalid_move', 'rename root');
      await rejectsWith(t, client.update(root.id, { parent_id: dir.id }), 400, 'invalid_move', 'move root');
      await rejectsWith(t, client.remove(root.id), 400, 'invalid_move', 'delete root');
      t.equal(await backend.snapshot(), before);
      t.same(await client.root(), root);
    });

    t.test('DELETE ?if_version=N deletes only the version the caller saw: a newer edit wins (409 stale_version, nothing changed)', async (t) => {
      const { client, token } = await newUser();
      const root = await client.root();
      const file = await client.create({ parent_id: root.id, name: 'edited.txt', kind: 'file' });
      await commitRandomBlocks(client, file.id, 0, [32]);
      await commitRandomBlocks(client, file.id, 1, [48]); // another device's edit: head 2
      const before = await backend.snapshot();
      const err = await rejectsWith(t, client.remove(file.id, { ifVersion: 1 }), 409, 'stale_version', 'delete of version 1 when the head is 2');
      t.equal(err?.extra.head_version, 2, 'the error names the head');
      t.equal(await backend.snapshot(), before, 'nothing changed');
      for (const bad of ['x', '-1', '1.5', '']) {
        const res = await raw(backend, 'DELETE', `/v1/nodes/${file.id}?if_version=${encodeURIComponent(bad)}`, { token });
        t.equal(res.status, 400, `if_version=${JSON.stringify(bad)} → 400`);
        t.equal(errorCode(res), 'bad_request');
      }
      t.equal(await backend.snapshot(), before, 'bad input changed nothing');
      const deleted = await client.remove(file.id, { ifVersion: 2 });
      t.not(deleted.deleted_at, null, 'with the head it saw, the delete goes through');
    });

    t.test('DELETE ?if_empty=true (rmdir) refuses a folder with live children (409 not_empty, nothing changed)', async (t) => {
      const { client, token } = await newUser();
      const root = await client.root();
      const dir = await client.create({ parent_id: root.id, name: 'd', kind: 'dir' });
      const child = await client.create({ parent_id: dir.id, name: 'added elsewhere', kind: 'file' });
      const before = await backend.snapshot();
      await rejectsWith(t, client.remove(dir.id, { ifEmpty: true }), 409, 'not_empty', 'a folder with a child');
      const bad = await raw(backend, 'DELETE', `/v1/nodes/${dir.id}?if_empty=1`, { token });
      t.equal(bad.status, 400, 'if_empty=1 → 400');
      t.equal(await backend.snapshot(), before, 'nothing changed');
      await client.remove(child.id);
      t.not((await client.remove(dir.id, { ifEmpty: true })).deleted_at, null, 'once empty (a trashed child does not count) it goes');
    });

    t.test('DELETE moves a node to the trash and restore brings it back; onto a taken name under a disambiguated one, or 409 when that name was asked for', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      const dir = await client.create({ parent_id: root.id, name: 'dir', kind: 'dir' });
      const file = await client.create({ parent_id: dir.id, name: 'f.txt', kind: 'file' });
      const blocks = await commitRandomBlocks(client, file.id, 0, [64]);

      const deleted = await client.remove(file.id);
      t.equal(deleted.id, file.id);
      t.type(deleted.deleted_at, 'string', 'deleted_at is set');
      t.ok(!Number.isNaN(Date.parse(deleted.deleted_at!)), 'deleted_at is a timestamp');
      t.same(await client.node(file.id), deleted, 'a trashed node is still readable by id');
      t.same(await childNames(client, dir.id), [], 'gone from the listing');

      const restored = await client.restore(file.id);
      t.match(restored, { id: file.id, parent_id: dir.id, name: 'f.txt', deleted_at: null, head_version: 1 });
      t.same(await childNames(client, dir.id), ['f.txt'], 'back in the listing');
      t.same((await client.manifest(file.id)).blocks, blocks, 'with its content');
      await rejectsWith(t, client.restore(file.id), 400, 'bad_request', 'restore of a live node');

      await client.remove(file.id);
      const taker = await client.create({ parent_id: dir.id, name: 'f.txt', kind: 'file' });
      const disambiguated = await client.restore(file.id);
      t.match(disambiguated, { id: file.id, parent_id: dir.id, name: 'f (restored).txt', deleted_at: null }, 'its name is taken: restored as "f (restored).txt"');
      t.same(await childNames(client, dir.id), ['f (restored).txt', 'f.txt']);
      t.equal((await client.node(taker.id)).deleted_at, null, 'the node that took the name stays');
      await client.remove(file.id);
      const before = await backend.snapshot();
      await rejectsWith(t, client.restore(file.id, { name: 'f.txt' }), 409, 'exists', 'restore into a taken name asked for');
      t.equal(await backend.snapshot(), before);
      const elsewhere = await client.restore(file.id, { name: 'f (restored).txt' });
      t.match(elsewhere, { id: file.id, parent_id: dir.id, name: 'f (restored).txt', deleted_at: null });

      // A folder goes to the trash with its content, and comes back with it.
      await client.remove(dir.id);
      t.same(await childNames(client, root.id), []);
      await client.restore(dir.id);
      t.same(await childNames(client, dir.id), ['f (restored).txt', 'f.txt']);
    });

    t.test('nothing can be created in, moved into or changed under a trashed folder (409 node_deleted)', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      const trashed = await client.create({ parent_id: root.id, name: 'trashed', kind: 'dir' });
      const sub = await client.create({ parent_id: trashed.id, name: 'sub', kind: 'dir' });
      const inside = await client.create({ parent_id: sub.id, name: 'inside.txt', kind: 'file' });
      const outside = await client.create({ parent_id: root.id, name: 'outside.txt', kind: 'file' });
      await client.remove(trashed.id);
      const before = await backend.snapshot();
      await rejectsWith(t, client.create({ parent_id: trashed.id, name: 'new', kind: 'file' }), 409, 'node_deleted', 'create in a trashed folder');
      await rejectsWith(t, client.create({ parent_id: sub.id, name: 'new', kind: 'dir' }), 409, 'node_deleted', 'create under a trashed ancestor');
      await rejectsWith(t, client.update(outside.id, { parent_id: sub.id }), 409, 'node_deleted', 'move into a trashed folder');
      await rejectsWith(t, client.update(inside.id, { name: 'renamed' }), 409, 'node_deleted', 'rename under a trashed folder');
      await rejectsWith(t, client.update(trashed.id, { mtime: 5 }), 409, 'node_deleted', 'attributes of a trashed folder');
      await rejectsWith(t, client.commit(inside.id, { base_version: 0, blocks: [], size: 0 }), 409, 'node_deleted', 'commit under a trashed folder');
      t.equal(await backend.snapshot(), before);
    });

    t.test('PATCH with only mtime and/or mode changes just those attributes', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      const file = await client.create({ parent_id: root.id, name: 'f', kind: 'file', mtime: 1000, mode: 0o644 });
      const a = await client.update(file.id, { mtime: 2000 });
      t.same(a, { ...file, mtime: 2000 });
      const b = await client.update(file.id, { mode: 0o755 });
      t.same(b, { ...file, mtime: 2000, mode: 0o755 });
      const c = await client.update(file.id, { mtime: 3000, mode: 0o600 });
      t.same(c, { ...file, mtime: 3000, mode: 0o600 });
      t.same(await client.node(file.id), c);
      // The root's attributes may change too (only its place and name are fixed).
      t.match(await client.update(root.id, { mtime: 4000 }), { id: root.id, mtime: 4000, parent_id: null, name: '' });
    });

    t.test('concurrent creates of one name: exactly one wins, the others are 409 exists; other names all succeed', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      const results = await Promise.allSettled([
        ...Array.from({ length: 8 }, (_, i) => client.create({ parent_id: root.id, name: 'same', kind: i % 2 ? 'dir' : 'file' })),
        ...Array.from({ length: 8 }, (_, i) => client.create({ parent_id: root.id, name: `other-${i}`, kind: 'file' })),
      ]);
      const same = results.slice(0, 8);
      t.equal(same.filter((r) => r.status === 'fulfilled').length, 1, 'one create of "same" succeeded');
      for (const r of same) if (r.status === 'rejected') t.match(r.reason, { status: 409, code: 'exists' });
      t.ok(results.slice(8).every((r) => r.status === 'fulfilled'), 'every other name was created');
      const names = await childNames(client, root.id);
      t.same(names, ['other-0', 'other-1', 'other-2', 'other-3', 'other-4', 'other-5', 'other-6', 'other-7', 'same']);
    });

    t.test('concurrent moves of two folders into each other never make a cycle: one wins, the other is 400 invalid_move', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      for (let round = 0; round < 5; round++) {
        const x = await client.create({ parent_id: root.id, name: `x${round}`, kind: 'dir' });
        const y = await client.create({ parent_id: root.id, name: `y${round}`, kind: 'dir' });
        const [intoY, intoX] = await Promise.allSettled([client.update(x.id, { parent_id: y.id }), client.update(y.id, { parent_id: x.id })]);
        t.equal([intoY, intoX].filter((r) => r.status === 'fulfilled').length, 1, `round ${round}: exactly one move succeeded`);
        for (const r of [intoY, intoX]) if (r.status === 'rejected') t.match(r.reason, { status: 400, code: 'invalid_move' });
        // Both folders still hang from the root.
        for (const start of [x, y]) {
          let node: NodeInfo = await client.node(start.id);
          for (let depth = 0; node.parent_id !== null && depth < 5; depth++) node = await client.node(node.parent_id);
          t.equal(node.id, root.id, `round ${round}: ${start.name} reaches the root`);
        }
      }
    });

    t.test('bad requests get their documented status and change nothing', async (t) => {
      const user = await newUser();
      const { client, token } = user;
      const root = await client.root();
      const dir = await client.create({ parent_id: root.id, name: 'dir', kind: 'dir' });
      const file = await client.create({ parent_id: dir.id, name: 'file.txt', kind: 'file' });
      await commitRandomBlocks(client, file.id, 0, [40]);
      const trashedFile = await client.create({ parent_id: root.id, name: 'gone.txt', kind: 'file' });
      await client.remove(trashedFile.id);
      const unknown = crypto.randomUUID();
      const before = await backend.snapshot();

      const check = async (what: string, res: Promise<{ status: number; json: unknown; headers: Headers }>, status: number, code: string) => {
        const r = await res;
        t.equal(r.status, status, `${what}: status`);
        t.equal(errorCode(r as Parameters<typeof errorCode>[0]), code, `${what}: error code`);
        t.equal(await backend.snapshot(), before, `${what}: changes nothing`);
      };

      // Authentication: no header, an unknown token, headers of the wrong form.
      const createBody = JSON.stringify({ parent_id: root.id, name: 'new', kind: 'file' });
      const authCases: Array<[string, Record<string, string>]> = [
        ['no Authorization header', {}],
        ['unknown token', { authorization: `Bearer stx_${crypto.randomBytes(32).toString('base64url')}` }],
        ['token of the wrong form', { authorization: 'Bearer not-a-token' }],
        ['Basic scheme', { authorization: `Basic ${Buffer.from(`x:${token}`).toString('base64')}` }],
        ['bare token without scheme', { authorization: token }],
        ['Bearer without a token', { authorization: 'Bearer' }],
        ['Bearer with two tokens', { authorization: `Bearer ${token} ${token}` }],
      ];
      for (const [what, headers] of authCases) {
        await check(`GET root, ${what}`, raw(backend, 'GET', '/v1/nodes/root', { headers }), 401, 'unauthorized');
        await check(`POST node, ${what}`, raw(backend, 'POST', '/v1/nodes', { headers: { ...headers, 'content-type': 'application/json' }, body: createBody }), 401, 'unauthorized');
        await check(`DELETE node, ${what}`, raw(backend, 'DELETE', `/v1/nodes/${file.id}`, { headers }), 401, 'unauthorized');
      }

      // Ids: unknown (404) and malformed (400) on every route that takes one.
      const idRoutes = (id: string): Array<[string, string, unknown]> => [
        ['GET', `/v1/nodes/${id}`, undefined],
        ['GET', `/v1/nodes/${id}/children`, undefined],
        ['PATCH', `/v1/nodes/${id}`, { name: 'x' }],
        ['DELETE', `/v1/nodes/${id}`, undefined],
        ['POST', `/v1/nodes/${id}/restore`, {}],
      ];
      for (const [method, path, body] of idRoutes(unknown)) {
        await check(`${method} ${path} (unknown id)`, rawJson(backend, method, path, token, body), 404, 'not_found');
      }
      await check('create under an unknown parent', rawJson(backend, 'POST', '/v1/nodes', token, { parent_id: unknown, name: 'n', kind: 'file' }), 404, 'not_found');
      await check('move into an unknown parent', rawJson(backend, 'PATCH', `/v1/nodes/${file.id}`, token, { parent_id: unknown }), 404, 'not_found');
      await check('restore into an unknown parent', rawJson(backend, 'POST', `/v1/nodes/${trashedFile.id}/restore`, token, { parent_id: unknown }), 404, 'not_found');
      for (const bad of ['not-a-uuid', unknown.toUpperCase(), `${unknown}0`, '12345', '%00', 'a%2Fb', `${unknown.slice(0, -1)}g`]) {
        for (const [method, path, body] of idRoutes(bad)) {
          await check(`${method} ${path} (malformed id)`, rawJson(backend, method, path, token, body), 400, 'bad_id');
        }
      }
      for (const bad of ['not-a-uuid', unknown.toUpperCase(), '']) {
        await check(`create with parent_id ${JSON.stringify(bad)}`, rawJson(backend, 'POST', '/v1/nodes', token, { parent_id: bad, name: 'n', kind: 'file' }), 400, 'bad_id');
        await check(`move with parent_id ${JSON.stringify(bad)}`, rawJson(backend, 'PATCH', `/v1/nodes/${file.id}`, token, { parent_id: bad }), 400, 'bad_id');
      }

      // Names: each rule of DESIGN §3, on create, rename and restore-to-a-name.
      const badNames: Array<[string, unknown]> = [
        ['containing "/"', 'a/b'],
        ['only "/"', '/'],
        ['containing NUL', 'a\u0000b'],
        ['".."', '..'],
        ['"."', '.'],
        ['empty', ''],
        ['256 ASCII bytes', 'x'.repeat(256)],
        ['256 bytes in 128 characters', 'é'.repeat(128)],
        ['not NFC', 'e\u0301'],
        ['a lone surrogate', 'a\uD800b'],
        ['not a string', 42],
        ['null', null],
      ];
      for (const [what, name] of badNames) {
        await check(`create, name ${what}`, rawJson(backend, 'POST', '/v1/nodes', token, { parent_id: dir.id, name, kind: 'file' }), 400, 'bad_name');
        await check(`rename, name ${what}`, rawJson(backend, 'PATCH', `/v1/nodes/${file.id}`, token, { name }), 400, 'bad_name');
        await check(`restore, name ${what}`, rawJson(backend, 'POST', `/v1/nodes/${trashedFile.id}/restore`, token, { name }), 400, 'bad_name');
      }
      await check('create without a name', rawJson(backend, 'POST', '/v1/nodes', token, { parent_id: dir.id, kind: 'file' }), 400, 'bad_request');

      // Bodies: malformed JSON, too large, wrong kind or shape, wrong content type.
      const jsonHeaders = { 'content-type': 'application/json' };
      for (const [what, body] of [['truncated', '{"parent_id": "'], ['not JSON', 'hello'], ['trailing garbage', '{} x'], ['single quotes', "{'a':1}"]]) {
        await check(`create, ${what}`, raw(backend, 'POST', '/v1/nodes', { token, body, headers: jsonHeaders }), 400, 'malformed_json');
        await check(`update, ${what}`, raw(backend, 'PATCH', `/v1/nodes/${file.id}`, { token, body, headers: jsonHeaders }), 400, 'malformed_json');
      }
      const big = JSON.stringify({ parent_id: dir.id, name: 'big', kind: 'file', pad: 'x'.repeat(MAX_JSON) });
      await check('create, body over max_json_bytes', raw(backend, 'POST', '/v1/nodes', { token, body: big, headers: jsonHeaders }), 413, 'too_large');
      await check('update, body over max_json_bytes', raw(backend, 'PATCH', `/v1/nodes/${file.id}`, { token, body: big, headers: jsonHeaders }), 413, 'too_large');
      const chunked = backend.fetch('/v1/nodes', {
        method: 'POST',
        token,
        headers: jsonHeaders,
        body: new ReadableStream({
          start(controller) {
            controller.enqueue(new TextEncoder().encode(big));
            controller.close();
          },
        }),
        duplex: 'half',
      } as RequestInit & { duplex: 'half' }).then(async (res) => ({ status: res.status, headers: res.headers, json: await res.json() as unknown }));
      await check('create, chunked body over max_json_bytes', chunked, 413, 'too_large');
      const shapes: Array<[string, unknown]> = [
        ['kind "symlink"', { parent_id: dir.id, name: 'n', kind: 'symlink' }],
        ['kind missing', { parent_id: dir.id, name: 'n' }],
        ['kind as a number', { parent_id: dir.id, name: 'n', kind: 1 }],
        ['parent_id missing', { name: 'n', kind: 'file' }],
        ['negative mtime', { parent_id: dir.id, name: 'n', kind: 'file', mtime: -1 }],
        ['mode past 07777', { parent_id: dir.id, name: 'n', kind: 'file', mode: 0o10000 }],
        ['an array', [dir.id, 'n', 'file']],
        ['null', null],
      ];
      for (const [what, body] of shapes) await check(`create, ${what}`, rawJson(backend, 'POST', '/v1/nodes', token, body), 400, 'bad_request');
      await check('create, empty body', raw(backend, 'POST', '/v1/nodes', { token, headers: jsonHeaders }), 400, 'bad_request');
      const updates: Array<[string, unknown]> = [
        ['nothing to change', {}],
        ['only replace', { replace: true }],
        ['replace not a boolean', { name: 'x', replace: 'yes' }],
        ['mtime not an integer', { mtime: 1.5 }],
        ['mode negative', { mode: -1 }],
        ['parent_id not a string', { parent_id: 7 }],
      ];
      for (const [what, body] of updates) await check(`update, ${what}`, rawJson(backend, 'PATCH', `/v1/nodes/${file.id}`, token, body), 400, 'bad_request');
      for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
        await check(`create as ${type}`, raw(backend, 'POST', '/v1/nodes', { token, body: createBody, headers: { 'content-type': type } }), 415, 'unsupported_media_type');
        await check(`update as ${type}`, raw(backend, 'PATCH', `/v1/nodes/${file.id}`, { token, body: '{"name":"y"}', headers: { 'content-type': type } }), 415, 'unsupported_media_type');
      }
      // And the valid request that all of the above were variations of does work.
      t.equal((await raw(backend, 'POST', '/v1/nodes', { token, body: createBody, headers: jsonHeaders })).status, 201);
    });
  });
}
