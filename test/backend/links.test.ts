import crypto from 'node:crypto';
import knexFactory from 'knex';
import t from 'tap';
import { hashToken } from '../../backend/services/accounts.js';
import { StratusClient } from '../../protocol/client.js';
import type { NodeInfo } from '../../protocol/types.js';
import { errorCode, raw, rawJson, rejectsWith } from '../helpers/api-assert.js';
import { commitRandomBlocks, connectEvents, startTestBackend, stopOwnCluster, testEngines, type TestBackend, type TestUser } from '../helpers/backend.js';

/**
 * Symbolic links on the server (DESIGN §3, §5): a node of kind `link` holds a target that is
 * stored exactly as written and never resolved. Creation and its validation, listings (both the
 * SQLite JSON fast path and the generic one), rename/move/replace, trash and restore, no versions,
 * the change feed and its hints, and migration 004 over a database that already has nodes (and
 * 005 after it).
 */

t.teardown(stopOwnCluster);

const MAX_JSON = 16 * 1024;

for (const engine of testEngines()) {
  t.test(`links [${engine}]`, async (t) => {
    const backend: TestBackend = await startTestBackend(engine, { limits: { max_json_bytes: MAX_JSON } });
    t.teardown(() => backend.close());
    let users = 0;
    const newUser = (): Promise<TestUser> => backend.addUser(`linker${++users}`);

    t.test('POST kind "link" stores the target exactly as written: size is its UTF-8 length, mode 0777, no versions; GET and the listing return the same node', async (t) => {
      const { client, token } = await newUser();
      const root = await client.root();
      const res = await rawJson(backend, 'POST', '/v1/nodes', token, { parent_id: root.id, name: 'rel', kind: 'link', target: '../lib/x.so.1', mtime: 1_600_000_000_000 });
      t.equal(res.status, 201);
      const rel = res.json as NodeInfo;
      t.same(rel, { ...rel, parent_id: root.id, name: 'rel', kind: 'link', head_version: 0, size: 13, mtime: 1_600_000_000_000, mode: 0o777, deleted_at: null, target: '../lib/x.so.1' });
      // Whatever a path can say is kept byte for byte: absolute, dangling, "..", "//", a trailing
      // slash, spaces, not NFC (names must be NFC; targets are not names), the 4095-byte limit.
      const targets = ['/usr/bin/env', 'does/not/exist', '..', 'a//b/./c/', ' spaced ', 'e\u0301', '😀/日本', 'x'.repeat(4095), 'é'.repeat(2047) + 'x'];
      const made: NodeInfo[] = [rel];
      for (const [i, target] of targets.entries()) {
        const link = await client.create({ parent_id: root.id, name: `l${i}`, kind: 'link', target });
        t.equal(link.target, target, `target ${JSON.stringify(target.slice(0, 16))} (${Buffer.byteLength(target)} bytes) is stored as written`);
        t.equal(link.size, Buffer.byteLength(target), 'size is the byte length of the target');
        made.push(link);
      }
      for (const link of made) t.same(await client.node(link.id), link, `GET ${link.name}`);
      const listed = (await client.children(root.id)).children;
      t.same(listed, [...made].sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name))), 'the listing holds the same nodes, targets included');
      // Files and folders have no target key at all.
      const file = await client.create({ parent_id: root.id, name: 'file', kind: 'file' });
      const dir = await client.create({ parent_id: root.id, name: 'dir', kind: 'dir' });
      for (const n of [file, dir, await client.node(file.id), ...(await client.children(root.id)).children.filter((c) => c.kind !== 'link')]) {
        t.notOk('target' in n, `${n.name} (${n.kind}) carries no target`);
      }

      // No versions: every versions route answers 409 not_a_file; a link is no folder either.
      await rejectsWith(t, client.versions(rel.id), 409, 'not_a_file', 'list versions');
      await rejectsWith(t, client.manifest(rel.id, 'head'), 409, 'not_a_file', 'the head manifest');
      await rejectsWith(t, client.commit(rel.id, { base_version: 0, blocks: [], size: 0 }), 409, 'not_a_file', 'a commit');
      await rejectsWith(t, client.restoreVersion(rel.id, 1), 409, 'not_a_file', 'a version restore');
      await rejectsWith(t, client.children(rel.id), 409, 'not_a_directory', 'children of a link');
      await rejectsWith(t, client.create({ parent_id: rel.id, name: 'x', kind: 'file' }), 409, 'not_a_directory', 'a node inside a link');
      await rejectsWith(t, client.update(file.id, { parent_id: rel.id }), 409, 'not_a_directory', 'a move into a link');
    });

    t.test('bad link requests are 400 and change nothing', async (t) => {
      const { client, token } = await newUser();
      const root = await client.root();
      const link = await client.create({ parent_id: root.id, name: 'link', kind: 'link', target: 't' });
      const file = await client.create({ parent_id: root.id, name: 'file', kind: 'file' });
      const before = await backend.snapshot();
      const check = async (what: string, res: ReturnType<typeof raw>, code: string) => {
        const r = await res;
        t.equal(r.status, 400, `${what}: 400`);
        t.equal(errorCode(r), code, `${what}: ${code}`);
        t.equal(await backend.snapshot(), before, `${what}: nothing changed`);
      };
      const create = (body: Record<string, unknown>) => rawJson(backend, 'POST', '/v1/nodes', token, { parent_id: root.id, name: 'n', kind: 'link', ...body });
      const badTargets: Array<[string, unknown]> = [
        ['missing', undefined],
        ['empty', ''],
        ['containing NUL', 'a\u0000b'],
        ['a lone surrogate', 'a\uD800b'],
        ['4096 ASCII bytes', 'x'.repeat(4096)],
        ['4096 bytes in 2048 characters', 'é'.repeat(2048)],
        ['a number', 42],
        ['null', null],
        ['an array', ['a']],
      ];
      for (const [what, target] of badTargets) await check(`target ${what}`, create({ target }), 'bad_target');
      await check('a mode on a link', create({ target: 't', mode: 0o644 }), 'bad_request');
      await check('a target on a file', create({ kind: 'file', target: 't' }), 'bad_request');
      await check('a target on a folder', create({ kind: 'dir', target: 't' }), 'bad_request');
      await check('PATCH a mode onto a link', rawJson(backend, 'PATCH', `/v1/nodes/${link.id}`, token, { mode: 0o600 }), 'bad_request');
      await check('PATCH a mode onto a link while renaming it', rawJson(backend, 'PATCH', `/v1/nodes/${link.id}`, token, { name: 'other', mode: 0o600 }), 'bad_request');
      await check('PATCH a link over a file with a mode', rawJson(backend, 'PATCH', `/v1/nodes/${link.id}`, token, { name: 'file', replace: true, mode: 0o600 }), 'bad_request');
      // A target that is not UTF-8 never reaches the service: the body is refused whole.
      const body = Buffer.concat([Buffer.from(`{"parent_id":"${root.id}","name":"n","kind":"link","target":"a`), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
      await check('a target that is not UTF-8', raw(backend, 'POST', '/v1/nodes', { token, body, headers: { 'content-type': 'application/json' } }), 'malformed_json');
      t.same(await client.node(file.id), file);
    });

    t.test('PATCH renames and moves a link (same id, same target) and sets its mtime', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      const dir = await client.create({ parent_id: root.id, name: 'dir', kind: 'dir' });
      const link = await client.create({ parent_id: root.id, name: 'a', kind: 'link', target: '../up' });
      t.same(await client.update(link.id, { name: 'b' }), { ...link, name: 'b' });
      t.same(await client.update(link.id, { parent_id: dir.id }), { ...link, name: 'b', parent_id: dir.id });
      t.same(await client.update(link.id, { mtime: 1234 }), { ...link, name: 'b', parent_id: dir.id, mtime: 1234 });
      t.same((await client.children(dir.id)).children, [{ ...link, name: 'b', parent_id: dir.id, mtime: 1234 }]);
    });

    t.test('PATCH with replace: a link over a file or a link, and a file over a link, put the source in place; the destination goes to the trash and can come back', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      const file = await client.create({ parent_id: root.id, name: 'f', kind: 'file' });
      const blocks = await commitRandomBlocks(client, file.id, 0, [100]);
      const l1 = await client.create({ parent_id: root.id, name: 'l1', kind: 'link', target: 'one' });
      const l2 = await client.create({ parent_id: root.id, name: 'l2', kind: 'link', target: 'two' });
      const other = await client.create({ parent_id: root.id, name: 'other', kind: 'file' });
      await commitRandomBlocks(client, other.id, 0, [7]);

      await rejectsWith(t, client.update(l1.id, { name: 'f' }), 409, 'exists', 'without replace');
      // Link over a file: the link keeps its id and takes the name; the file (and its history) is in the trash.
      t.same(await client.update(l1.id, { name: 'f', replace: true }), { ...l1, name: 'f' });
      const trashed = await client.node(file.id);
      t.not(trashed.deleted_at, null, 'the replaced file is in the trash');
      // Link over a link: the same.
      t.same(await client.update(l2.id, { name: 'f', replace: true }), { ...l2, name: 'f' });
      t.not((await client.node(l1.id)).deleted_at, null, 'the replaced link is in the trash');
      // File over a link (sed -i on a link does this): the file keeps its id and versions.
      const moved = await client.update(other.id, { name: 'f', replace: true });
      t.match(moved, { id: other.id, name: 'f', kind: 'file', head_version: 1 });
      t.not((await client.node(l2.id)).deleted_at, null, 'the link replaced by a file is in the trash');
      t.same((await client.children(root.id)).children.map((c) => c.id), [other.id]);

      // What went to the trash comes back intact.
      t.match(await client.restore(file.id, { name: 'f.old' }), { id: file.id, kind: 'file', head_version: 1, deleted_at: null });
      t.same((await client.manifest(file.id)).blocks, blocks, 'with its content');
      t.same(await client.restore(l1.id, { name: 'l1' }), { ...l1, name: 'l1' }, 'a link comes back with its target');
    });

    t.test('PATCH with replace refuses a link over a folder (409 is_a_directory) and a folder over a link (409 not_a_directory), changing nothing', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      const dir = await client.create({ parent_id: root.id, name: 'dir', kind: 'dir' });
      const link = await client.create({ parent_id: root.id, name: 'link', kind: 'link', target: 'dir' });
      const before = await backend.snapshot();
      await rejectsWith(t, client.update(link.id, { name: 'dir', replace: true }), 409, 'is_a_directory', 'link over an empty folder');
      await rejectsWith(t, client.update(dir.id, { name: 'link', replace: true }), 409, 'not_a_directory', 'folder over a link');
      t.equal(await backend.snapshot(), before);
    });

    t.test('DELETE puts a link in the trash (also with if_version=0) and restore brings it back with its target', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      const link = await client.create({ parent_id: root.id, name: 'link', kind: 'link', target: '/abs/path' });
      const deleted = await client.remove(link.id, { ifVersion: 0 });
      t.equal(deleted.target, '/abs/path');
      t.type(deleted.deleted_at, 'string');
      t.same((await client.children(root.id)).children, []);
      t.same(await client.restore(link.id), link);
      t.same((await client.children(root.id)).children, [link]);
    });

    t.test('two creates of one link name: one wins, the other is 409 exists naming the winner', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      const results = await Promise.allSettled(['a', 'b', 'c', 'd'].map((target) => client.create({ parent_id: root.id, name: 'same', kind: 'link', target })));
      const won = results.filter((r): r is PromiseFulfilledResult<NodeInfo> => r.status === 'fulfilled');
      t.equal(won.length, 1, 'one create succeeded');
      const err = await rejectsWith(t, client.create({ parent_id: root.id, name: 'same', kind: 'link', target: 'z' }), 409, 'exists', 'a later create');
      t.match(err?.extra, { node_id: won[0]!.value.id, kind: 'link' });
    });

    t.test('the change feed carries links in their current state, target included, and the events socket hints them', async (t) => {
      const { client, token } = await newUser();
      const root = await client.root();
      const events = await connectEvents(backend.url, token);
      t.teardown(() => events.close());
      t.equal(await events.waitFor(0), 0, 'the socket is ready');
      const start = (await client.changesHead()).cursor;
      const link = await client.create({ parent_id: root.id, name: 'link', kind: 'link', target: 'x/y' });
      t.equal(await events.waitFor(1), 1, 'the new link is hinted');
      const page = await client.changes(start);
      t.same(page.changes, [link], 'the feed has the new link with its target');
      t.equal(page.cursor, (await client.changesHead()).cursor, 'up to the head');
      await client.update(link.id, { name: 'moved' });
      await client.remove(link.id);
      const later = await client.changes(page.cursor);
      t.equal(later.changes.length, 1, 'once per node');
      t.match(later.changes[0], { id: link.id, name: 'moved', kind: 'link', target: 'x/y' });
      t.type(later.changes[0]!.deleted_at, 'string', 'in its current state: in the trash');
    });

    t.test('links are private like every node: another user gets 404 and sees nothing of them in their feed', async (t) => {
      const alice = await newUser();
      const bob = await newUser();
      const link = await alice.client.create({ parent_id: (await alice.client.root()).id, name: 'secret', kind: 'link', target: '/home/alice' });
      await rejectsWith(t, bob.client.node(link.id), 404, 'not_found', 'GET of another user\'s link');
      t.notOk((await bob.client.changes(undefined)).changes.some((c) => c.id === link.id), 'not in another user\'s feed');
    });
  });

  t.test(`migration 004 over an existing database keeps every node, runs down and up again, and refuses to go down while links exist; 005 then carries the links into namespaces [${engine}]`, async (t) => {
    // 004 is tried on the schema as it was (005 cannot be undone: its down refuses), then the server
    // brings the database to the latest schema and serves what 004 left.
    const token = `stx_${crypto.randomBytes(32).toString('base64url')}`;
    const rootId = crypto.randomUUID();
    const oldId = crypto.randomUUID();
    const linkId = crypto.randomUUID();
    const backend = await startTestBackend(engine, {}, {
      // The schema as it was before links (001–003), with a user, a device and a file in it, as the server of 003 wrote them.
      before: async (config) => {
        const db = knexFactory(config);
        // The migrations this test is about (later ones are left to their own tests).
        const pending = async () => ((await db.migrate.list()) as [unknown[], string[]])[1].filter((m) => m <= '005_namespaces');
        try {
          for (let i = 0; i < 3; i++) await db.migrate.up();
          t.same(await pending(), ['004_links', '005_namespaces'], 'built at 003');
          const [userRow] = await db('users').insert({ name: 'old', public_id: crypto.randomBytes(12).toString('base64url'), created_at: 1 }).returning('id');
          const userId = Number(typeof userRow === 'object' ? (userRow as { id: unknown }).id : userRow);
          await db('devices').insert({ user_id: userId, public_id: crypto.randomBytes(12).toString('base64url'), name: 'first device', token_hash: hashToken(token), created_at: 1 });
          await db('nodes').insert({ id: rootId, owner_id: userId, parent_id: null, name: '', kind: 'dir', head_version: 0, size: 0, mtime: 1, mode: 0o755, created_at: 1 });
          await db('nodes').insert({ id: oldId, owner_id: userId, parent_id: rootId, name: 'old.txt', kind: 'file', head_version: 0, size: 0, mtime: 5, mode: 0o600, created_at: 6 });
          await db('changes').insert([
            { owner_id: userId, node_id: rootId, action: 'user.create', at: 1 },
            { owner_id: userId, node_id: oldId, action: 'node.create', at: 6 },
          ]);

          await db.migrate.up();
          t.same(await pending(), ['005_namespaces'], 'at 004');
          t.match(await db('nodes').where({ id: oldId }).first(), { name: 'old.txt', kind: 'file', mtime: 5, mode: 0o600, target: null }, 'the file made before 004 is there, with no target');
          t.equal(await db('nodes').count({ n: '*' }).first().then((r) => Number(r?.n)), 2, 'every node kept');

          // Down (no links yet) and up again: the name index still holds afterwards (SQLite rebuilds the table).
          await db.migrate.down();
          t.same(await pending(), ['004_links', '005_namespaces'], 'down to 003');
          await db.migrate.up();
          const link = { owner_id: userId, parent_id: rootId, kind: 'link', head_version: 0, size: 7, mtime: 7, mode: 0o777, created_at: 7, target: 'old.txt' };
          await t.rejects(db('nodes').insert({ ...link, id: crypto.randomUUID(), name: 'old.txt' }), 'the live-name index survived');
          await db('nodes').insert({ ...link, id: linkId, name: 'new' });
          await t.rejects(db.migrate.down(), /while links exist/, 'down is refused while a link exists');
          t.same(await pending(), ['005_namespaces'], 'and 004 stays');
        } finally {
          await db.destroy();
        }
      },
    });
    t.teardown(() => backend.close());
    const client = new StratusClient({ server: backend.url, token });
    t.teardown(() => client.close());
    const root = await client.root();
    t.equal(root.id, rootId, 'after 005 the old user is served: their root');
    const children = (await client.children(root.id)).children;
    t.match(children, [{ id: linkId, name: 'new', kind: 'link', target: 'old.txt', mode: 0o777 }, { id: oldId, name: 'old.txt', kind: 'file', mtime: 5, mode: 0o600 }], 'the file and the link are there');
    t.notOk('target' in children[1]!, 'and the file has no target');
    await rejectsWith(t, client.create({ parent_id: root.id, name: 'old.txt', kind: 'link', target: 'x' }), 409, 'exists', 'the live-name index holds through the API');
    const feed = await client.changes(undefined);
    t.same(feed.changes.map((c) => c.id).sort(), [rootId, oldId, linkId].sort(), 'the feed from the start holds every node once, the link included');
    t.same(feed.changes.find((c) => c.id === linkId), await client.node(linkId), 'the link in its current state');
    const made = await client.create({ parent_id: root.id, name: 'newer', kind: 'link', target: 'new' });
    t.same(await client.node(made.id), made, 'and new links are made as ever');
  });
}
