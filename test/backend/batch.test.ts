import t from 'tap';
import type { BatchResult, NodeInfo } from '../../protocol/types.js';
import { startTestBackend, stopOwnCluster, testEngines } from '../helpers/backend.js';

/**
 * POST /v1/batch (issue 15: creates batched): each op is applied as its own request would be, in
 * order, in one transaction with a savepoint per op — a failing op is answered with its error and
 * undone alone, the others stand; `$N` names the node an earlier op made; a malformed batch
 * changes nothing. Run once per engine.
 */

t.teardown(stopOwnCluster);

const nodeOf = (r: BatchResult | undefined): NodeInfo => {
  if (!r || !('node' in r)) throw new Error(`not a success: ${JSON.stringify(r)}`);
  return r.node;
};

for (const engine of testEngines()) {
  t.test(`batch [${engine}]`, async (t) => {
    const MAX_OPS = 1200;
    const backend = await startTestBackend(engine, { limits: { max_batch_ops: MAX_OPS } });
    t.teardown(() => backend.close());
    const alice = await backend.addUser('alice');
    const bob = await backend.addUser('bob');
    const root = await alice.client.root();

    t.test('a folder made and filled in one batch, `$N` naming what an earlier op made', async (t) => {
      const { results } = await alice.client.batch([
        { op: 'create', node: { parent_id: root.id, name: 'album', kind: 'dir' } },
        { op: 'create', node: { parent_id: '$0', name: 'a.jpg', kind: 'file' } },
        { op: 'create', node: { parent_id: '$0', name: 'b.jpg', kind: 'file', mode: 0o600 } },
        { op: 'update', id: '$2', node: { name: 'c.jpg' } },
      ]);
      t.same(
        results.map((r) => r.status),
        [201, 201, 201, 200],
      );
      const album = nodeOf(results[0]);
      const names = (await alice.client.allChildren(album.id)).map((n) => n.name).sort();
      t.same(names, ['a.jpg', 'c.jpg'], 'the server lists what the batch made');
      t.equal(nodeOf(results[3]).id, nodeOf(results[2]).id, 'the update renamed the node op 2 made');
    });

    t.test('a failing op is answered with its error and changes nothing; the ops around it stand', async (t) => {
      const { results } = await alice.client.batch([
        { op: 'create', node: { parent_id: root.id, name: 'one.txt', kind: 'file' } },
        { op: 'create', node: { parent_id: root.id, name: 'one.txt', kind: 'file' } },
        { op: 'create', node: { parent_id: root.id, name: 'bad/name', kind: 'file' } },
        { op: 'create', node: { parent_id: '$1', name: 'x', kind: 'file' } },
        { op: 'create', node: { parent_id: '$9', name: 'y', kind: 'file' } },
        { op: 'create', node: { parent_id: root.id, name: 'two.txt', kind: 'file' } },
      ]);
      t.same(
        results.map((r) => r.status),
        [201, 409, 400, 400, 400, 201],
      );
      t.match(results[1], { error: { code: 'exists' } }, 'the same name twice: the second is refused as its own request would be');
      t.match(results[2], { error: { code: 'bad_name' } });
      t.match(results[3], { error: { code: 'bad_request', message: /op 1, which failed/ } }, '$N of a failed op');
      t.match(results[4], { error: { code: 'bad_request', message: /does not come before/ } }, '$N of a later op');
      const names = (await alice.client.allChildren(root.id)).map((n) => n.name);
      t.ok(names.includes('one.txt') && names.includes('two.txt'), 'the good ops stand');
      t.notOk(names.includes('x') || names.includes('y'), 'the failed ops left nothing');
      const changes = await alice.client.changes(undefined);
      t.equal(changes.changes.filter((c) => c.name === 'one.txt').length, 1, 'one change for one.txt: the refused create journaled nothing');
    });

    t.test("another user's nodes are out of reach in a batch as everywhere (404, as if absent)", async (t) => {
      const secret = await alice.client.create({ parent_id: root.id, name: 'secret', kind: 'dir' });
      const bobRoot = await bob.client.root();
      const { results } = await bob.client.batch([
        { op: 'create', node: { parent_id: secret.id, name: 'planted', kind: 'file' } },
        { op: 'update', id: secret.id, node: { parent_id: bobRoot.id } },
        { op: 'delete', id: secret.id },
        { op: 'create', node: { parent_id: bobRoot.id, name: 'mine', kind: 'file' } },
      ]);
      t.same(
        results.map((r) => r.status),
        [404, 404, 404, 201],
      );
      t.same((await alice.client.allChildren(secret.id)).length, 0, "nothing planted in alice's folder");
      t.equal((await alice.client.node(secret.id)).deleted_at, null, 'not deleted, not moved');
    });

    t.test('deletes with their conditions, as DELETE takes them', async (t) => {
      const dir = await alice.client.create({ parent_id: root.id, name: 'full', kind: 'dir' });
      await alice.client.create({ parent_id: dir.id, name: 'inside', kind: 'file' });
      const file = await alice.client.create({ parent_id: root.id, name: 'doomed', kind: 'file' });
      const { results } = await alice.client.batch([
        { op: 'delete', id: dir.id, if_empty: true },
        { op: 'delete', id: file.id, if_version: 3 },
        { op: 'delete', id: file.id, if_version: 0 },
      ]);
      t.same(
        results.map((r) => r.status),
        [409, 409, 200],
      );
      t.match(results[0], { error: { code: 'not_empty' } });
      t.match(results[1], { error: { code: 'stale_version' } });
      t.ok(nodeOf(results[2]).deleted_at, 'deleted');
    });

    t.test('a run of creates larger than one INSERT, journaled in op order', async (t) => {
      const dir = await alice.client.create({ parent_id: root.id, name: 'many', kind: 'dir' });
      const { cursor } = await alice.client.changes(undefined);
      const names = Array.from({ length: MAX_OPS }, (_, i) => `f${String(i).padStart(4, '0')}`);
      const { results } = await alice.client.batch(names.map((name) => ({ op: 'create', node: { parent_id: dir.id, name, kind: 'file' } })));
      t.ok(results.every((r) => r.status === 201), `${MAX_OPS} created`);
      t.same((await alice.client.allChildren(dir.id)).map((n) => n.name), names, 'every one listed');
      const seen: string[] = [];
      for (let c = cursor; ; ) {
        const page = await alice.client.changes(c);
        seen.push(...page.changes.map((ch) => ch.name ?? ''));
        if (!page.has_more) break;
        c = page.cursor;
      }
      t.same(seen, names, 'the change feed has them once each, in the order of the ops');
    });

    t.test('ops see what the ops before them did: a name freed by a delete, a share entry holding a name', async (t) => {
      const old = await alice.client.create({ parent_id: root.id, name: 'recycled', kind: 'file' });
      const team = await bob.client.create({ parent_id: (await bob.client.root()).id, name: 'team', kind: 'dir' });
      await bob.client.share(team.id, { user: 'alice', role: 'editor' });
      const { results } = await alice.client.batch([
        { op: 'create', node: { parent_id: root.id, name: 'recycled', kind: 'file' } },
        { op: 'delete', id: old.id },
        { op: 'create', node: { parent_id: root.id, name: 'recycled', kind: 'file' } },
        { op: 'create', node: { parent_id: root.id, name: 'team', kind: 'dir' } },
        { op: 'create', node: { parent_id: team.id, name: 'from-alice.txt', kind: 'file' } },
      ]);
      t.same(
        results.map((r) => r.status),
        [409, 200, 201, 409, 201],
      );
      t.match(results[3], { error: { code: 'exists' } }, "the share entry's name is taken in alice's root");
      t.equal(nodeOf(results[4]).parent_id, team.id, "an editor creates in the owner's shared folder");
      t.ok((await bob.client.allChildren(team.id)).some((n) => n.name === 'from-alice.txt'), 'bob sees it');
    });

    t.test('a malformed batch is refused whole with 400 and changes nothing', async (t) => {
      const bodies: unknown[] = [
        {},
        { ops: [] },
        { ops: 'create' },
        { ops: [{ op: 'chmod', id: root.id }] },
        { ops: [{ op: 'create' }] },
        { ops: [{ op: 'delete', id: root.id, extra: 1 }] },
        { ops: Array.from({ length: MAX_OPS + 1 }, (_, i) => ({ op: 'create', node: { parent_id: root.id, name: `n${i}`, kind: 'file' } })) },
      ];
      const before = await backend.snapshot();
      for (const body of bodies) {
        const res = await backend.fetch('/v1/batch', { method: 'POST', token: alice.token, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
        t.equal(res.status, 400, `${JSON.stringify(body).slice(0, 60)}: 400`);
        t.match(await res.json(), { error: { code: 'bad_request' } });
      }
      t.equal(await backend.snapshot(), before, 'database and block store unchanged');
    });

    t.test('a batch costs the rate limit what its ops cost the server: creates a tenth of a request, updates and deletes half; over the limit it is refused whole (429) and changes nothing', async (t) => {
      // 60 requests a minute for this user.
      const limited = await startTestBackend(engine, { rate: { requests_per_s: 1, window_s: 60 } });
      t.teardown(() => limited.close());
      const carol = await limited.addUser('carol');
      const home = await carol.client.root(); // 1
      const creates = (n: number, prefix: string) => Array.from({ length: n }, (_, i) => ({ op: 'create' as const, node: { parent_id: home.id, name: `${prefix}${i}`, kind: 'file' as const } }));
      const made = await carol.client.batch(creates(500, 'f')); // 50: 51 spent
      t.ok(made.results.every((r) => r.status === 201), '500 creates in one batch fit where 500 requests would not');
      const first = nodeOf(made.results[0]);
      const moved = await carol.client.batch([{ op: 'update', id: first.id, node: { name: 'renamed' } }, ...creates(2, 'g')]); // 1 (½ + 2⁄10, rounded up): 52
      t.same(moved.results.map((r) => r.status), [200, 201, 201], 'an update and two creates cost one request');
      const before = await limited.snapshot();
      const over = await carol.client.batch(creates(90, 'h')).then(
        () => undefined,
        (err: { status?: number; code?: string }) => err,
      ); // 9: 61 > 60
      t.equal(over?.status, 429, 'a batch past the limit is refused with 429');
      t.equal(over?.code, 'too_many_requests');
      t.equal(await limited.snapshot(), before, 'and nothing of it was applied');
    });

    t.test('without a token: 401, as every route', async (t) => {
      const res = await backend.fetch('/v1/batch', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"ops":[]}' });
      t.equal(res.status, 401);
    });
  });
}
