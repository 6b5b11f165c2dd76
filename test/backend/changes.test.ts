import t from 'tap';
import type { StratusClient } from '../../protocol/client.js';
import type { ChangesPage, NodeInfo } from '../../protocol/types.js';
import { errorCode, raw, rejectsWith } from '../helpers/api-assert.js';
import { randomBlock, startTestBackend, stopOwnCluster, testEngines, type TestBackend, type TestUser } from '../helpers/backend.js';

/**
 * The change feed (DESIGN §5 `GET /v1/changes`): the current state of every node that changed
 * after a cursor, once per node, in journal order; paging; state semantics; the head cursor.
 * Cursors are opaque strings: a test compares them for equality only (the cursor after reading
 * the feed to its end is the head; nothing after the head is an empty page with the same cursor).
 * A cursor the server did not give this user is refused; none, or a number (a position of the
 * global journal before namespaces), is a full resync.
 */

t.teardown(stopOwnCluster);

/** Every page from `from` on (none: from the start), following cursors until has_more is false. */
async function walk(client: StratusClient, from: string | undefined, limit?: number): Promise<{ pages: ChangesPage[]; cursor: string }> {
  const pages: ChangesPage[] = [];
  let cursor = from;
  for (let i = 0; i < 1000; i++) {
    const page = await client.changes(cursor, limit);
    pages.push(page);
    cursor = page.cursor;
    if (!page.has_more) return { pages, cursor: page.cursor };
  }
  throw new Error('the feed never ended');
}

async function commitBytes(client: StratusClient, fileId: string, base: number, size: number): Promise<void> {
  const block = randomBlock(size);
  await client.putBlock(block.hash, block.bytes);
  await client.commit(fileId, { base_version: base, blocks: [{ hash: block.hash, size }], size });
}

for (const engine of testEngines()) {
  t.test(`change feed [${engine}]`, async (t) => {
    const backend: TestBackend = await startTestBackend(engine);
    t.teardown(() => backend.close());
    let users = 0;
    const newUser = (): Promise<TestUser> => backend.addUser(`user${++users}`);

    t.test('after create, rename, move, commit and delete the feed has each changed node once, in its current state, in journal order', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      const start = (await client.changesHead()).cursor;

      const a = await client.create({ parent_id: root.id, name: 'A', kind: 'dir' });
      const f = await client.create({ parent_id: root.id, name: 'f', kind: 'file' });
      const g = await client.create({ parent_id: root.id, name: 'g', kind: 'file' });
      const untouched = await client.create({ parent_id: a.id, name: 'u', kind: 'dir' });
      await client.update(f.id, { name: 'f2' });
      await client.update(g.id, { parent_id: a.id });
      await commitBytes(client, f.id, 0, 500);
      await client.remove(g.id);
      const h = await client.create({ parent_id: a.id, name: 'h', kind: 'file' });
      await client.update(untouched.id, { mtime: 1234 });
      await client.update(a.id, { name: 'A2' });

      const page = await client.changes(start);
      t.equal(page.has_more, false);
      // Order of each node's last change: f (commit), g (delete), h (create), u (attrs), A (rename).
      t.same(page.changes.map((c) => c.id), [f.id, g.id, h.id, untouched.id, a.id], 'each node once, at its last change');
      for (const entry of page.changes) t.same(entry, await client.node(entry.id), `${entry.name}: its current state, and nothing else (no seq)`);
      t.match(page.changes[0], { name: 'f2', head_version: 1, size: 500, parent_id: root.id });
      t.match(page.changes[1], { name: 'g', parent_id: a.id });
      t.type(page.changes[1]!.deleted_at, 'string', 'a trashed node is reported with deleted_at');
      t.match(page.changes[4], { name: 'A2', parent_id: root.id });
      t.type(page.cursor, 'string', 'the cursor is an opaque string');
      t.not(page.cursor, start, 'it moved');
      t.equal((await client.changesHead()).cursor, page.cursor, 'the cursor after the last change is the head');
      t.same(await client.changes(page.cursor), { changes: [], cursor: page.cursor, has_more: false }, 'nothing after it: an empty page with the same cursor');
    });

    t.test('a file replaced by a rename shows the destination with its new version and the source trashed', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      const dest = await client.create({ parent_id: root.id, name: 'doc', kind: 'file' });
      await commitBytes(client, dest.id, 0, 100);
      const temp = await client.create({ parent_id: root.id, name: 'doc.tmp', kind: 'file' });
      await commitBytes(client, temp.id, 0, 200);
      const cursor = (await client.changesHead()).cursor;
      await client.update(temp.id, { name: 'doc', replace: true });
      const page = await client.changes(cursor);
      t.same(page.changes.map((c) => c.id).sort(), [dest.id, temp.id].sort());
      t.match(page.changes.find((c) => c.id === dest.id), { name: 'doc', head_version: 2, size: 200, deleted_at: null });
      t.type(page.changes.find((c) => c.id === temp.id)?.deleted_at, 'string');
    });

    t.test('cursor=C returns only the changes after it', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      const x = await client.create({ parent_id: root.id, name: 'x', kind: 'file' });
      const y = await client.create({ parent_id: root.id, name: 'y', kind: 'file' });
      const c1 = (await client.changes(undefined)).cursor;
      t.same(await client.changes(c1), { changes: [], cursor: c1, has_more: false }, 'nothing after the head');

      await client.update(y.id, { name: 'y2' });
      const after = await client.changes(c1);
      t.same(after.changes.map((c) => c.id), [y.id], 'only what changed after the cursor');
      t.not(after.cursor, c1, 'the cursor moved');
      t.equal(after.cursor, (await client.changesHead()).cursor, 'to the head');
      t.same(await client.changes(after.cursor), { changes: [], cursor: after.cursor, has_more: false });

      // With no cursor the feed holds everything, the root included, each once.
      const all = await client.changes(undefined);
      t.same(all.changes.map((c) => c.id), [root.id, x.id, y.id]);
      t.equal(all.cursor, after.cursor);
      // Reading the feed changes nothing.
      const before = await backend.snapshot();
      await client.changes(undefined);
      await client.changes(c1);
      await client.changesHead();
      t.equal(await backend.snapshot(), before);
    });

    t.test('paging with limit: has_more is true until the feed is exhausted and walking the pages yields every change', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      const start = (await client.changesHead()).cursor;
      const nodes: NodeInfo[] = [];
      for (let i = 0; i < 12; i++) nodes.push(await client.create({ parent_id: root.id, name: `n${String(i).padStart(2, '0')}`, kind: 'file' }));

      // 12 changes in pages of 5: 5, 5, 2.
      const { pages, cursor } = await walk(client, start, 5);
      t.same(pages.map((p) => p.changes.length), [5, 5, 2]);
      t.same(pages.map((p) => p.has_more), [true, true, false]);
      t.same(pages.flatMap((p) => p.changes.map((c) => c.id)), nodes.map((n) => n.id), 'every change, in order');
      t.equal(cursor, (await client.changesHead()).cursor);

      // 12 changes in pages of 4 and of 12: the page that takes the last change says so.
      const exact = await walk(client, start, 4);
      t.same(exact.pages.map((p) => p.has_more), [true, true, false], 'has_more is false on the page that ends at the head');
      const one = await client.changes(start, 12);
      t.equal(one.has_more, false);
      t.equal(one.changes.length, 12);
      const over = await client.changes(start, 13);
      t.equal(over.has_more, false);

      // A node changed on several pages: the walk ends with its current state.
      const mid = pages[1]!.cursor;
      await client.update(nodes[0]!.id, { name: 'renamed' });
      await client.update(nodes[11]!.id, { mtime: 99 });
      await client.update(nodes[0]!.id, { mtime: 77 });
      const state = new Map<string, NodeInfo>();
      for (const page of (await walk(client, start, 3)).pages) for (const c of page.changes) state.set(c.id, c);
      t.equal(state.size, 12);
      for (const n of nodes) t.same(state.get(n.id), await client.node(n.id));
      // From the middle cursor: the two changed nodes plus the ones after it.
      const tail = await walk(client, mid, 1);
      const ids = tail.pages.flatMap((p) => p.changes.map((c) => c.id));
      t.same(ids, [nodes[10]!.id, nodes[11]!.id, nodes[0]!.id, nodes[11]!.id, nodes[0]!.id], 'a page of one change at a time, in journal order');
      t.equal(tail.cursor, (await client.changesHead()).cursor, 'and the walk ends at the head');
      t.same(new Set(tail.pages.map((p) => p.cursor)).size, tail.pages.length, 'every page moved the cursor');
    });

    t.test('applying the feed twice is harmless: it carries state, not operations', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      const docs = await client.create({ parent_id: root.id, name: 'docs', kind: 'dir' });
      const a = await client.create({ parent_id: docs.id, name: 'a.txt', kind: 'file' });
      const mid = (await client.changesHead()).cursor;
      const b = await client.create({ parent_id: root.id, name: 'b.txt', kind: 'file' });
      await commitBytes(client, a.id, 0, 10);
      await client.update(b.id, { parent_id: docs.id, name: 'b2.txt' });
      await commitBytes(client, a.id, 1, 20);
      await client.remove(a.id);
      await client.create({ parent_id: docs.id, name: 'a.txt', kind: 'dir' });

      const apply = (state: Map<string, NodeInfo>, page: ChangesPage) => {
        for (const c of page.changes) state.set(c.id, c);
      };
      const once = new Map<string, NodeInfo>();
      for (const page of (await walk(client, undefined, 2)).pages) apply(once, page);
      const twice = new Map(once);
      for (const page of (await walk(client, undefined, 2)).pages) apply(twice, page);
      for (const page of (await walk(client, mid, 3)).pages) apply(twice, page);
      t.same([...twice.entries()], [...once.entries()], 'replaying whole or partial feeds gives the same state');

      // And that state is the server's: every node as GET returns it, the live tree as listed.
      for (const [id, node] of once) t.same(node, await client.node(id));
      const liveTree = async (dirId: string): Promise<string[]> => {
        const out: string[] = [];
        for (const c of await client.allChildren(dirId)) {
          out.push(c.id);
          if (c.kind === 'dir') out.push(...(await liveTree(c.id)));
        }
        return out;
      };
      const listed = (await liveTree(root.id)).sort();
      const fromFeed = [...once.values()].filter((n) => n.deleted_at === null && n.parent_id !== null).map((n) => n.id).sort();
      t.same(fromFeed, listed, 'the live nodes of the feed are the listed tree');
    });

    t.test('uploading blocks and failed requests add nothing to the feed', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      const head = (await client.changesHead()).cursor;
      const block = randomBlock(300);
      await client.putBlock(block.hash, block.bytes);
      await client.create({ parent_id: root.id, name: 'a/b', kind: 'file' }).catch(() => undefined);
      await client.update(root.id, { name: 'x' }).catch(() => undefined);
      t.equal((await client.changesHead()).cursor, head);
      t.same(await client.changes(head), { changes: [], cursor: head, has_more: false });
    });

    t.test('GET /v1/changes/head returns the current cursor', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      const h0 = (await client.changesHead()).cursor;
      t.type(h0, 'string');
      t.same(await client.changes(undefined), { changes: [root], cursor: h0, has_more: false }, 'a new user already has the creation of the root: the feed from the start holds it, and ends at the head');
      t.same(await client.changes(h0), { changes: [], cursor: h0, has_more: false }, 'nothing after the head');
      const n = await client.create({ parent_id: root.id, name: 'n', kind: 'dir' });
      const h1 = (await client.changesHead()).cursor;
      t.not(h1, h0, 'a change moves the head');
      const page = await client.changes(h0);
      t.equal(page.cursor, h1);
      t.same(page.changes.map((c) => c.id), [n.id]);
      t.same(await client.changes(h1), { changes: [], cursor: h1, has_more: false });
    });

    t.test('a cursor the server did not give this user is 400 and changes nothing: one character altered, another user\'s, garbage', async (t) => {
      const me = await newUser();
      const other = await newUser();
      const root = await me.client.root();
      await me.client.create({ parent_id: root.id, name: 'a', kind: 'file' });
      const mid = (await me.client.changesHead()).cursor;
      const b = await me.client.create({ parent_id: root.id, name: 'b', kind: 'file' });
      await other.client.create({ parent_id: (await other.client.root()).id, name: 'theirs', kind: 'dir' });
      const head = (await me.client.changesHead()).cursor;
      const before = await backend.snapshot();
      const refused = async (cursor: string, what: string) => {
        const res = await raw(backend, 'GET', `/v1/changes?cursor=${encodeURIComponent(cursor)}`, { token: me.token });
        t.equal(res.status, 400, `${what}: status`);
        t.equal(errorCode(res), 'bad_request', `${what}: code`);
        return res.text;
      };

      // Every single character of a real cursor altered, one at a time (to another character of the same kind).
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
      for (let i = 0; i < mid.length; i++) {
        const c = mid[i]!;
        const swapped = c === '.' ? '_' : alphabet[(alphabet.indexOf(c) + 1) % alphabet.length]!;
        await refused(`${mid.slice(0, i)}${swapped}${mid.slice(i + 1)}`, `character ${i} of the cursor altered`);
      }
      await refused(`${mid}A`, 'a character appended');
      await refused(mid.slice(0, -1), 'the last character cut');

      // Another user's cursors, real ones: their head, and one of their pages.
      const theirs = [(await other.client.changesHead()).cursor, (await other.client.changes(undefined, 1)).cursor];
      const bodies = new Set<string>();
      for (const [i, cursor] of theirs.entries()) bodies.add(await refused(cursor, `another user's cursor ${i}`));
      // A cursor of mine with another user's signature, and theirs with mine.
      const [, myPayload, mySig] = mid.split('.');
      const [, theirPayload, theirSig] = theirs[0]!.split('.');
      bodies.add(await refused(`c1.${myPayload}.${theirSig}`, 'my positions, their signature'));
      bodies.add(await refused(`c1.${theirPayload}.${mySig}`, 'their positions, my signature'));

      // Garbage.
      for (const garbage of ['', 'abc', 'c1', 'c1.', 'c1..', 'c1.x.y', `c2.${myPayload}.${mySig}`, `${mid}.x`, '-1', '1.5', '1e3', '0x10', ' 5', '123456789012345678901', 'null', '[]', 'x'.repeat(5000)]) {
        bodies.add(await refused(garbage, `garbage ${JSON.stringify(garbage.slice(0, 30))}`));
      }
      for (const query of ['cursor=a&cursor=b', `cursor=${encodeURIComponent(mid)}&cursor=${encodeURIComponent(mid)}`]) {
        const res = await raw(backend, 'GET', `/v1/changes?${query}`, { token: me.token });
        t.equal(res.status, 400, `${query}: status`);
        t.equal(errorCode(res), 'bad_request', `${query}: code`);
      }
      t.equal(bodies.size, 1, 'another user\'s cursor is refused with the very same answer as garbage');
      await rejectsWith(t, me.client.changes(theirs[0]), 400, 'bad_request', 'through the typed client');

      t.equal(await backend.snapshot(), before, 'nothing changed');
      t.equal((await me.client.changesHead()).cursor, head, 'my head did not move');
      const after = await me.client.changes(mid);
      t.same(after.changes.map((c) => c.id), [b.id], 'my real cursor still works, as before');
      t.equal(after.cursor, head);
    });

    t.test('an old numeric cursor or since=N is answered with a full resync: every node of the user, each once, as a walk from no cursor', async (t) => {
      const { client, token } = await newUser();
      const root = await client.root();
      const docs = await client.create({ parent_id: root.id, name: 'docs', kind: 'dir' });
      const a = await client.create({ parent_id: docs.id, name: 'a', kind: 'file' });
      await commitBytes(client, a.id, 0, 40);
      const b = await client.create({ parent_id: root.id, name: 'b', kind: 'file' });
      await client.update(b.id, { parent_id: docs.id, name: 'b2' });
      const c = await client.create({ parent_id: root.id, name: 'c', kind: 'dir' });
      await client.remove(c.id);
      await client.update(a.id, { mtime: 5 });
      const everyNode = [root.id, docs.id, a.id, b.id, c.id].sort();
      const head = (await client.changesHead()).cursor;

      const fromStart = await walk(client, undefined);
      const ids = fromStart.pages.flatMap((p) => p.changes.map((x) => x.id));
      t.same([...ids].sort(), everyNode, 'from no cursor: every node of the user, each once');
      t.equal(fromStart.cursor, head, 'ending at the head');
      const full = fromStart.pages.flatMap((p) => p.changes);
      for (const entry of full) t.same(entry, await client.node(entry.id), `${entry.name || 'root'}: its current state`);
      /** The state a client builds by applying pages in order (a node on several pages: its last state wins). */
      const applied = (pages: ChangesPage[]) => {
        const state = new Map<string, NodeInfo>();
        for (const page of pages) for (const x of page.changes) state.set(x.id, x);
        return [...state.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
      };
      const fullState = applied(fromStart.pages);

      for (const old of ['5', '0', '3', '99999999999']) {
        const resync = await walk(client, old);
        t.same(resync.pages.flatMap((p) => p.changes), full, `cursor=${old}: the same full resync`);
        t.equal(resync.cursor, head, `cursor=${old}: ending at the head`);
        // Paged, too: every page after the first follows the opaque cursor it got.
        const paged = await walk(client, old, 2);
        t.ok(paged.pages.length > 1, `cursor=${old}, pages of 2: ${paged.pages.length} pages`);
        t.same(applied(paged.pages), fullState, `cursor=${old}, pages of 2: the same state of every node`);
        t.equal(paged.cursor, head);
      }
      for (const query of ['since=3', 'since=0', 'since=3&limit=100']) {
        const res = await raw(backend, 'GET', `/v1/changes?${query}`, { token });
        t.equal(res.status, 200, `${query}: 200`);
        t.same(res.json, { changes: full, cursor: head, has_more: false }, `${query}: a full resync, as from no cursor`);
      }
      const sincePaged = await raw(backend, 'GET', '/v1/changes?since=3&limit=2', { token });
      const first = sincePaged.json as ChangesPage;
      t.equal(first.has_more, true, 'since=3&limit=2: the first page of a full resync');
      const rest = await walk(client, first.cursor, 2);
      t.same(applied([first, ...rest.pages]), fullState, 'its cursor continues it: the same state of every node');
      t.equal(rest.cursor, head);
    });

    t.test('a bad since or limit is 400', async (t) => {
      const { token } = await newUser();
      const before = await backend.snapshot();
      for (const query of ['since=abc', 'since=-1', 'since=1.5', 'since=1e400', 'since=0x', 'since=1&since=2', 'limit=0', 'limit=-3', 'limit=2.5', 'limit=abc']) {
        const res = await raw(backend, 'GET', `/v1/changes?${query}`, { token });
        t.equal(res.status, 400, `${query}: status`);
        t.equal(errorCode(res), 'bad_request', `${query}: code`);
      }
      t.equal(await backend.snapshot(), before);
    });
  });
}
