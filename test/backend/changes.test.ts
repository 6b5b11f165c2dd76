import t from 'tap';
import type { StratusClient } from '../../protocol/client.js';
import type { ChangeEntry, ChangesPage, NodeInfo } from '../../protocol/types.js';
import { errorCode, raw } from '../helpers/api-assert.js';
import { randomBlock, startTestBackend, stopOwnCluster, testEngines, type TestBackend, type TestUser } from '../helpers/backend.js';

/**
 * The change feed (DESIGN §5 `GET /v1/changes`): the current state of every node that changed
 * after a cursor, once per node, in journal order; paging; state semantics; the head cursor.
 */

t.teardown(stopOwnCluster);

function withoutSeq(entry: ChangeEntry): NodeInfo {
  const { seq: _seq, ...node } = entry;
  return node;
}

/** Every page from `since` on, following cursors until has_more is false. */
async function walk(client: StratusClient, since: number, limit?: number): Promise<{ pages: ChangesPage[]; cursor: number }> {
  const pages: ChangesPage[] = [];
  let cursor = since;
  for (let i = 0; i < 1000; i++) {
    const page = await client.changes(cursor, limit);
    pages.push(page);
    cursor = page.cursor;
    if (!page.has_more) return { pages, cursor };
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
      for (const entry of page.changes) t.same(withoutSeq(entry), await client.node(entry.id), `${entry.name}: its current state`);
      t.match(page.changes[0], { name: 'f2', head_version: 1, size: 500, parent_id: root.id });
      t.match(page.changes[1], { name: 'g', parent_id: a.id });
      t.type(page.changes[1]!.deleted_at, 'string', 'a trashed node is reported with deleted_at');
      t.match(page.changes[4], { name: 'A2', parent_id: root.id });
      const seqs = page.changes.map((c) => c.seq);
      t.ok(seqs.every((s, i) => i === 0 || s > seqs[i - 1]!), 'seqs increase');
      t.ok(seqs[0]! > start, 'all after the starting cursor');
      t.equal(page.cursor, seqs.at(-1), 'the cursor is the seq of the last change');
      t.equal((await client.changesHead()).cursor, page.cursor, 'and the head');
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

    t.test('since=cursor returns only the changes after it', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      const x = await client.create({ parent_id: root.id, name: 'x', kind: 'file' });
      const y = await client.create({ parent_id: root.id, name: 'y', kind: 'file' });
      const c1 = (await client.changes(0)).cursor;
      t.same(await client.changes(c1), { changes: [], cursor: c1, has_more: false }, 'nothing after the head');

      await client.update(y.id, { name: 'y2' });
      const after = await client.changes(c1);
      t.same(after.changes.map((c) => c.id), [y.id], 'only what changed after the cursor');
      t.ok(after.cursor > c1);
      t.same(await client.changes(after.cursor), { changes: [], cursor: after.cursor, has_more: false });

      // From 0 the feed holds everything, the root included, each once.
      const all = await client.changes(0);
      t.same(all.changes.map((c) => c.id), [root.id, x.id, y.id]);
      t.equal(all.cursor, after.cursor);
      // Reading the feed changes nothing.
      const before = await backend.snapshot();
      await client.changes(0);
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
      for (const page of (await walk(client, start, 3)).pages) for (const c of page.changes) state.set(c.id, withoutSeq(c));
      t.equal(state.size, 12);
      for (const n of nodes) t.same(state.get(n.id), await client.node(n.id));
      // From the middle cursor: the two changed nodes plus the ones after it.
      const tail = await walk(client, mid, 1);
      const ids = tail.pages.flatMap((p) => p.changes.map((c) => c.id));
      t.same(ids, [nodes[10]!.id, nodes[11]!.id, nodes[0]!.id, nodes[11]!.id, nodes[0]!.id], 'a page of one change at a time, in journal order');
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
        for (const c of page.changes) state.set(c.id, withoutSeq(c));
      };
      const once = new Map<string, NodeInfo>();
      for (const page of (await walk(client, 0, 2)).pages) apply(once, page);
      const twice = new Map(once);
      for (const page of (await walk(client, 0, 2)).pages) apply(twice, page);
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
      t.ok(h0 > 0, 'a new user already has the creation of the root');
      t.equal((await client.changes(0)).cursor, h0);
      const n = await client.create({ parent_id: root.id, name: 'n', kind: 'dir' });
      const h1 = (await client.changesHead()).cursor;
      t.ok(h1 > h0);
      const page = await client.changes(h0);
      t.equal(page.cursor, h1);
      t.same(page.changes.map((c) => c.id), [n.id]);
      t.same(await client.changes(h1), { changes: [], cursor: h1, has_more: false });
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
