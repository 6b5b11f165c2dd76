import t from 'tap';
import { StratusClient } from '../../protocol/client.js';
import type { HistoryEntry, NodeInfo } from '../../protocol/types.js';
import { raw, rejectsWith } from '../helpers/api-assert.js';
import { commitRandomBlocks, startTestBackend, stopOwnCluster, testEngines, type TestBackend, type TestUser } from '../helpers/backend.js';

/**
 * GET /v1/history (DESIGN §5): a folder and its children as they were at a past time, from the
 * journal's states. A tree is built and changed step by step (edits, renames, moves, a rename over
 * a file, deletes, a restore); after each step the live tree is recorded with the time, and the
 * history at each recorded time must be exactly that tree. Then access (another user, a viewer of a
 * share, share entries placed and renamed in a grantee's tree), paging, purged versions, bad input,
 * and the device name in version replies.
 *
 * Times: the journal stamps each change with the server's clock in ms (this process's clock: the
 * server runs in it). A time T is taken once a step's calls have returned (the change is committed),
 * and the next step starts only once the clock has passed T, so T holds that step and nothing after.
 */

t.teardown(stopOwnCluster);

/** The present time, once the clock has moved past it: a change made after this returns is later than it. */
async function recordTime(): Promise<number> {
  const at = Date.now();
  while (Date.now() <= at) await new Promise((resolve) => setImmediate(resolve));
  return at;
}

/** What a tree shows of a node, comparable between the live tree and history. */
function shown(kind: string, version: number, size: number, target?: string): string {
  return kind === 'dir' ? '<dir>' : kind === 'link' ? `<link> ${target}` : `v${version} ${size} bytes`;
}

/** The whole live tree under a folder: { path: what it holds }. */
async function liveTree(client: StratusClient, id: string, prefix = ''): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const c of await client.allChildren(id)) {
    out[prefix + c.name + (c.kind === 'dir' ? '/' : '')] = shown(c.kind, c.head_version, c.size, c.target);
    if (c.kind === 'dir') Object.assign(out, await liveTree(client, c.id, `${prefix}${c.name}/`));
  }
  return out;
}

/** Every child of a folder at `at`, following pages. */
async function allPast(client: StratusClient, at: number | string, id?: string, limit?: number): Promise<HistoryEntry[]> {
  const out: HistoryEntry[] = [];
  let after: string | undefined;
  for (let i = 0; i < 1000; i++) {
    const page = await client.history(at, id, { after, limit });
    out.push(...page.children);
    if (page.next === null) return out;
    after = page.next;
  }
  throw new Error('history pages never ended');
}

/** The whole tree under a folder as it was at `at`. */
async function pastTree(client: StratusClient, at: number, id?: string, prefix = ''): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const c of await allPast(client, at, id)) {
    out[prefix + c.name + (c.kind === 'dir' ? '/' : '')] = shown(c.kind, c.version, c.size, c.target);
    if (c.kind === 'dir') Object.assign(out, await pastTree(client, at, c.id, `${prefix}${c.name}/`));
  }
  return out;
}

for (const engine of testEngines()) {
  t.test(`history [${engine}]`, async (t) => {
    const backend: TestBackend = await startTestBackend(engine);
    t.teardown(() => backend.close());
    let users = 0;
    const newUser = (): Promise<TestUser> => backend.addUser(`user${++users}`);

    t.test('the tree at each recorded time is the tree as it was then: edits, renames, moves, a rename over a file, deletes, a restore', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      const recorded: Array<{ at: number; tree: Record<string, string>; what: string }> = [];
      const record = async (what: string) => {
        const tree = await liveTree(client, root.id);
        recorded.push({ at: await recordTime(), tree, what });
      };
      await record('empty');

      const a = await client.create({ parent_id: root.id, name: 'A', kind: 'dir' });
      const b = await client.create({ parent_id: root.id, name: 'B', kind: 'dir' });
      const deep = await client.create({ parent_id: b.id, name: 'deep', kind: 'dir' });
      const f = await client.create({ parent_id: a.id, name: 'f.txt', kind: 'file' });
      await commitRandomBlocks(client, f.id, 0, [1000]);
      const top = await client.create({ parent_id: root.id, name: 'top.txt', kind: 'file' });
      await commitRandomBlocks(client, top.id, 0, [300, 200]);
      await client.create({ parent_id: root.id, name: 'L', kind: 'link', target: 'A/f.txt' });
      await client.create({ parent_id: deep.id, name: 'empty', kind: 'file' });
      await record('made');

      await commitRandomBlocks(client, f.id, 1, [2345]);
      await client.update(top.id, { name: 'top2.txt' });
      await record('f edited, top renamed');

      await client.update(f.id, { parent_id: b.id });
      const g = await client.create({ parent_id: a.id, name: 'g', kind: 'file' });
      await commitRandomBlocks(client, g.id, 0, [10]);
      await record('f moved into B, g made');

      await client.remove(b.id);
      await record('B deleted (with f and deep)');

      await client.restore(b.id);
      await commitRandomBlocks(client, f.id, 2, [77]);
      await record('B restored, f edited');

      const tmp = await client.create({ parent_id: root.id, name: 'top2.txt.tmp', kind: 'file' });
      await commitRandomBlocks(client, tmp.id, 0, [4321]);
      await client.update(tmp.id, { name: 'top2.txt', replace: true });
      await record('a temp file renamed over top2.txt');

      await client.remove(g.id);
      await client.update(a.id, { name: 'A2', parent_id: b.id });
      await record('g deleted, A renamed and moved into B');

      t.ok(recorded.length >= 8);
      for (const { at, tree, what } of recorded) {
        t.same(await pastTree(client, at), tree, `at ${new Date(at).toISOString()} (${what})`);
      }
      t.same(recorded[0]!.tree, {}, 'the first record is an empty root');
      t.match(recorded[5]!.tree, { 'B/f.txt': 'v3 77 bytes' }, 'sanity: the tree changed as the steps say');

      const page = await client.history(recorded[3]!.at, a.id);
      t.match(page.node, { id: a.id, parent_id: root.id, name: 'A', kind: 'dir', version: 0 }, 'the folder itself as it was');
      const gThen = page.children.find((c) => c.name === 'g');
      t.match(gThen, { id: g.id, parent_id: a.id, kind: 'file', version: 1, size: 10 }, 'a child: its id, place, version and size then');
      t.equal(gThen?.mtime, (await client.manifest(g.id, 1)).mtime, "a file's mtime is its version's");
      const link = (await client.history(recorded[1]!.at)).children.find((c) => c.kind === 'link');
      t.match(link, { name: 'L', target: 'A/f.txt', size: 7 }, 'a link with its target');

      t.same(await pastTree(client, recorded[3]!.at, b.id), { 'deep/': '<dir>', 'deep/empty': 'v0 0 bytes', 'f.txt': 'v2 2345 bytes' }, 'a sub-folder as it was');
      await rejectsWith(t, client.history(recorded[0]!.at, a.id), 404, 'not_found', 'a folder made after T');
      await rejectsWith(t, client.history(recorded[4]!.at, b.id), 404, 'not_found', 'a folder in the trash at T');
      await rejectsWith(t, client.history(recorded[0]!.at - 60_000), 404, 'not_found', 'the root before the user existed');
    });

    t.test('ISO 8601 times and ms since the epoch name the same instant; a time without a zone is UTC', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      await client.create({ parent_id: root.id, name: 'x', kind: 'dir' });
      const at = await recordTime();
      await client.create({ parent_id: root.id, name: 'y', kind: 'dir' });
      const iso = new Date(at).toISOString();
      const names = async (when: number | string) => (await allPast(client, when)).map((c) => c.name);
      t.same(await names(at), ['x']);
      t.same(await names(iso), ['x'], 'toISOString form');
      t.same(await names(iso.replace('Z', '')), ['x'], 'without a zone: UTC');
      t.same(await names(iso.replace('T', ' ')), ['x'], 'a space for the T');
      const d = new Date(at + 2 * 3_600_000);
      const p = (n: number, w = 2) => String(n).padStart(w, '0');
      const plusTwo = `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())}T${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}.${p(d.getUTCMilliseconds(), 3)}+02:00`;
      t.same(await names(plusTwo), ['x'], 'with an offset');
      t.same(await names(Date.now() - 1), ['x', 'y']);
    });

    t.test('pages by name follow each other and add up to the whole folder, also with entries left out', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      const dir = await client.create({ parent_id: root.id, name: 'many', kind: 'dir' });
      const made: NodeInfo[] = [];
      for (let i = 0; i < 23; i++) made.push(await client.create({ parent_id: dir.id, name: `n${String(i).padStart(2, '0')}${i % 3 ? 'é' : ''}`, kind: i % 4 ? 'file' : 'dir' }));
      const at = await recordTime();
      for (const n of made.slice(5, 15)) await client.remove(n.id);
      const whole = (await client.allChildren(dir.id)).map((c) => c.name);
      const later = await recordTime();
      const expected = made.map((n) => n.name).sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
      t.same((await allPast(client, at, dir.id, 4)).map((c) => c.name), expected, 'pages of 4 before the deletes');
      t.same((await allPast(client, later, dir.id, 3)).map((c) => c.name), whole, 'pages of 3 after them');
      const first = await client.history(at, dir.id, { limit: 5 });
      t.equal(first.children.length, 5);
      t.equal(first.next, first.children[4]!.name, 'next is the last name of a full page');
      t.equal((await client.history(at, dir.id)).next, null, 'one page holds everything: no next');
    });

    t.test('a file whose version at T was purged is left out; its other times still show', async (t) => {
      const { client } = await newUser();
      const root = await client.root();
      const f = await client.create({ parent_id: root.id, name: 'f', kind: 'file' });
      await commitRandomBlocks(client, f.id, 0, [100]);
      const v1 = await recordTime();
      await commitRandomBlocks(client, f.id, 1, [200]);
      const v2 = await recordTime();
      // What retention does to an old version: its rows go.
      await backend.db('version_blocks').where({ node_id: f.id, version: 1 }).delete();
      await backend.db('versions').where({ node_id: f.id, version: 1 }).delete();
      t.same((await client.history(v1)).children, [], 'version 1 purged: f is left out at a time it was version 1');
      t.match((await client.history(v2)).children, [{ name: 'f', version: 2, size: 200 }]);
    });

    t.test("another user gets 404 for the caller's folders; a viewer of a share sees its history, and the entry where it was in their tree", async (t) => {
      const alice = await newUser();
      const bob = await newUser();
      const eve = await newUser();
      const aliceRoot = await alice.client.root();
      const bobRoot = await bob.client.root();
      const photos = await alice.client.create({ parent_id: aliceRoot.id, name: 'Photos', kind: 'dir' });
      const pic = await alice.client.create({ parent_id: photos.id, name: 'a.jpg', kind: 'file' });
      await commitRandomBlocks(alice.client, pic.id, 0, [500]);
      const secret = await alice.client.create({ parent_id: aliceRoot.id, name: 'secret', kind: 'dir' });
      const beforeShare = await recordTime();

      await rejectsWith(t, eve.client.history(beforeShare, photos.id), 404, 'not_found', "another user and alice's folder");
      await rejectsWith(t, eve.client.history(beforeShare, aliceRoot.id), 404, 'not_found', "another user and alice's root");
      t.same((await eve.client.history(beforeShare)).children, [], "eve's own root is hers alone");

      const share = await alice.client.share(photos.id, { user: bob.name, role: 'viewer' });
      const moved = await alice.client.create({ parent_id: photos.id, name: 'b.jpg', kind: 'file' });
      await alice.client.update(moved.id, { parent_id: secret.id });
      const shared = await recordTime();

      t.same((await bob.client.history(beforeShare, photos.id)).children.map((c) => c.name), ['a.jpg'], 'a viewer sees the shared folder as it was (also before it was shared)');
      t.match((await bob.client.history(shared, photos.id)).node, { id: photos.id, parent_id: bobRoot.id, name: 'Photos' }, 'the folder where the viewer has it');
      await rejectsWith(t, bob.client.history(shared, secret.id), 404, 'not_found', 'a folder of the owner that is not shared');
      t.same((await bob.client.history(beforeShare)).children, [], "bob's root before the share: no entry");
      t.match((await bob.client.history(shared)).children, [{ id: photos.id, name: 'Photos', kind: 'dir', parent_id: bobRoot.id }], "bob's root after: the share's entry");
      t.same((await alice.client.history(shared)).children.map((c) => c.name), ['Photos', 'secret'], "alice's own root is unchanged by it");

      await bob.client.update(photos.id, { name: 'From Alice' });
      const renamed = await recordTime();
      t.same((await bob.client.history(shared)).children.map((c) => c.name), ['Photos'], 'before bob renamed his entry');
      t.same((await bob.client.history(renamed)).children.map((c) => c.name), ['From Alice'], 'after');
      t.same((await alice.client.history(renamed)).children.map((c) => c.name), ['Photos', 'secret'], "the owner's name stays");

      // b.jpg was in the share for a moment (at `shared` it is in secret): never shown to bob through the share.
      await alice.client.update(moved.id, { parent_id: photos.id });
      const back = await recordTime();
      t.same((await bob.client.history(back, photos.id)).children.map((c) => c.name), ['a.jpg', 'b.jpg']);
      // Moves across namespaces (the share's and alice's root's) journal in both: the owner's history follows them.
      const names = async (at: number, id: string) => (await alice.client.history(at, id)).children.map((c) => c.name);
      t.same([await names(shared, photos.id), await names(shared, secret.id)], [['a.jpg'], ['b.jpg']], 'alice: moved out of the share at `shared`');
      t.same([await names(back, photos.id), await names(back, secret.id)], [['a.jpg', 'b.jpg'], []], 'alice: moved back in at `back`');
      await alice.client.update(moved.id, { parent_id: secret.id });
      t.same((await bob.client.history(back, photos.id)).children.map((c) => c.name), ['a.jpg'], 'a child no longer visible now is left out, also at a time it was in the share');

      await alice.client.unshare(photos.id, share.id);
      await rejectsWith(t, bob.client.history(back, photos.id), 404, 'not_found', 'a revoked share: its history is gone too');
      t.same((await bob.client.history(back)).children, [], 'and its entry in his past root');
    });

    t.test('bad input: 400 with a clear message', async (t) => {
      const { client, token } = await newUser();
      const root = await client.root();
      const f = await client.create({ parent_id: root.id, name: 'f', kind: 'file' });
      const now = Date.now();
      const cases: Array<[string, RegExp]> = [
        ['', /at is required/],
        ['at=yesterday', /ISO 8601/],
        ['at=2026-02-30T10:00', /ISO 8601/],
        ['at=2026-12-01T25:00', /ISO 8601/],
        ['at=1e12', /ISO 8601/],
        ['at=-5', /ISO 8601/],
        [`at=${now + 3_600_000}`, /future/],
        ['at=9999-01-01', /future/],
        [`at=${now}&at=${now}`, /once/],
        [`at=${now}&parent_id=nope`, /node id/],
        [`at=${now}&limit=0`, /limit/],
      ];
      for (const [query, message] of cases) {
        const res = await raw(backend, 'GET', `/v1/history?${query}`, { token });
        t.equal(res.status, 400, `${query || '(no query)'}: 400`);
        t.match((res.json as { error: { message: string } }).error.message, message, `${query || '(no query)'}: says why`);
      }
      await rejectsWith(t, client.history(Date.now() - 1, f.id), 409, 'not_a_directory', 'a file is not a folder');
    });

    t.test('version lists and manifests name the device that committed each version', async (t) => {
      const { client } = await newUser();
      const me = await client.whoami();
      const root = await client.root();
      const f = await client.create({ parent_id: root.id, name: 'f', kind: 'file' });
      await commitRandomBlocks(client, f.id, 0, [10]);
      const laptop = await client.createDevice('laptop');
      const other = new StratusClient({ server: backend.url, token: laptop.token });
      t.teardown(() => other.close());
      const committed = await other.commit(f.id, { base_version: 1, blocks: [], size: 0 });
      t.equal(committed.device_name, 'laptop', 'the commit reply');
      const { versions } = await client.versions(f.id);
      t.same(versions.map((v) => [v.version, v.device_name]), [[2, 'laptop'], [1, me.device.name]], 'the version list');
      t.equal((await client.manifest(f.id, 1)).device_name, me.device.name, 'a manifest');
    });
  });
}
