import crypto from 'node:crypto';
import t from 'tap';
import type { ChangesPage, NodeInfo } from '../../protocol/types.js';
import { raw, rawJson, type RawResponse } from '../helpers/api-assert.js';
import { commitRandomBlocks, startTestBackend, stopOwnCluster, testEngines, type TestBackend } from '../helpers/backend.js';

/**
 * Invariant 8 (DESIGN §4): every request is authorized, and a user never sees anything outside
 * what is theirs — not by name, size, listing, change feed or error text. Alice attacks Bob's
 * tree, versions, blocks, feed and devices; every attempt must look exactly like one aimed at
 * something that does not exist, and must leave everything as it was.
 */

t.teardown(stopOwnCluster);

function randomHash(): string {
  return crypto.randomBytes(32).toString('hex');
}

for (const engine of testEngines()) {
  t.test(`invariant 8: users are isolated from each other [${engine}]`, async (t) => {
    const backend: TestBackend = await startTestBackend(engine);
    t.teardown(() => backend.close());
    const alice = await backend.addUser('alice');
    const bob = await backend.addUser('bob');
    const a = alice.client;
    const b = bob.client;

    // Bob: a folder with a committed file (two versions), a subfolder, a file in the trash.
    const bobRoot = await b.root();
    const bobDir = await b.create({ parent_id: bobRoot.id, name: 'private', kind: 'dir' });
    const bobSub = await b.create({ parent_id: bobDir.id, name: 'sub', kind: 'dir' });
    const bobFile = await b.create({ parent_id: bobDir.id, name: 'secret.txt', kind: 'file' });
    const bobBlocksV1 = await commitRandomBlocks(b, bobFile.id, 0, [1000, 500]);
    const bobBlocksV2 = await commitRandomBlocks(b, bobFile.id, 1, [700]);
    const bobTrashed = await b.create({ parent_id: bobRoot.id, name: 'old.txt', kind: 'file' });
    await b.remove(bobTrashed.id);
    const bobNodes: NodeInfo[] = [bobRoot, bobDir, bobSub, await b.node(bobFile.id), await b.node(bobTrashed.id)];
    const bobHashes = [...bobBlocksV1, ...bobBlocksV2].map((x) => x.hash);
    const bobDevice = (await b.whoami()).device;

    // Alice: a folder, a committed file, a file in the trash.
    const aliceRoot = await a.root();
    const aliceDir = await a.create({ parent_id: aliceRoot.id, name: 'mine', kind: 'dir' });
    const aliceFile = await a.create({ parent_id: aliceDir.id, name: 'notes.txt', kind: 'file' });
    const aliceBlocks = await commitRandomBlocks(a, aliceFile.id, 0, [300]);
    const aliceTrashed = await a.create({ parent_id: aliceRoot.id, name: 'trash.txt', kind: 'file' });
    await a.remove(aliceTrashed.id);

    /** Alice's raw request next to the same request naming an id that exists nowhere: same status, same body. */
    const sameAsUnknown = async (what: string, req: (id: string) => Promise<RawResponse>, id: string, unknown: string, status = 404) => {
      const theirs = await req(id);
      const nobodys = await req(unknown);
      t.equal(theirs.status, status, `${what}: ${status}`);
      t.equal(theirs.text, nobodys.text, `${what}: the same body as for an id that does not exist`);
      t.equal(theirs.headers.get('content-type'), nobodys.headers.get('content-type'), `${what}: the same content type`);
    };
    const get = (path: string) => raw(backend, 'GET', path, { token: alice.token });
    const send = (method: string, path: string, body: unknown) => rawJson(backend, method, path, alice.token, body);

    t.test('alice cannot see bob\'s nodes, listings, versions or manifests: 404 exactly like an unknown id', async (t) => {
      const before = await backend.snapshot();
      for (const node of bobNodes) {
        const label = node.name || 'root';
        await sameAsUnknown(`GET ${label}`, (id) => get(`/v1/nodes/${id}`), node.id, crypto.randomUUID());
        if (node.kind === 'dir') {
          await sameAsUnknown(`children of ${label}`, (id) => get(`/v1/nodes/${id}/children`), node.id, crypto.randomUUID());
          await sameAsUnknown(`children of ${label}, paged`, (id) => get(`/v1/nodes/${id}/children?limit=1&after=a`), node.id, crypto.randomUUID());
        }
      }
      await sameAsUnknown('versions of secret.txt', (id) => get(`/v1/nodes/${id}/versions`), bobFile.id, crypto.randomUUID());
      for (const v of ['1', '2', 'head']) {
        await sameAsUnknown(`manifest ${v} of secret.txt`, (id) => get(`/v1/nodes/${id}/versions/${v}`), bobFile.id, crypto.randomUUID());
      }
      // Through the typed client as well: the same error.
      await t.rejects(a.node(bobFile.id), { status: 404, code: 'not_found' });
      await t.rejects(a.manifest(bobFile.id), { status: 404, code: 'not_found' });
      // Alice's own listing holds only her nodes.
      t.same((await a.allChildren(aliceRoot.id)).map((n) => n.id), [aliceDir.id]);
      t.equal(await backend.snapshot(), before, 'looking changed nothing');
    });

    t.test('alice cannot create in, rename, move, delete, restore or commit to bob\'s nodes, nor move hers into his folders', async (t) => {
      const before = await backend.snapshot();
      // Creating in bob's folder: the same 404 whether or not bob has a node of that name there.
      for (const name of ['secret.txt', 'sub', 'fresh-name']) {
        for (const kind of ['file', 'dir']) {
          await sameAsUnknown(`create ${kind} "${name}" in bob's folder`, (id) => send('POST', '/v1/nodes', { parent_id: id, name, kind }), bobDir.id, crypto.randomUUID());
        }
      }
      await sameAsUnknown('create in bob\'s root', (id) => send('POST', '/v1/nodes', { parent_id: id, name: 'x', kind: 'file' }), bobRoot.id, crypto.randomUUID());
      await sameAsUnknown('create in bob\'s trash', (id) => send('POST', '/v1/nodes', { parent_id: id, name: 'x', kind: 'file' }), bobTrashed.id, crypto.randomUUID());
      for (const node of bobNodes) {
        const label = node.name || 'root';
        for (const [what, body] of [
          ['rename', { name: 'pwned' }],
          ['rename with replace', { name: 'sub', replace: true }],
          ['move into alice\'s folder', { parent_id: aliceDir.id }],
          ['move within bob\'s tree', { parent_id: bobRoot.id, name: 'moved' }],
          ['change mtime', { mtime: 1 }],
          ['change mode', { mode: 0o777 }],
        ] as const) {
          await sameAsUnknown(`${what}: ${label}`, (id) => send('PATCH', `/v1/nodes/${id}`, body), node.id, crypto.randomUUID());
        }
        await sameAsUnknown(`delete ${label}`, (id) => raw(backend, 'DELETE', `/v1/nodes/${id}`, { token: alice.token }), node.id, crypto.randomUUID());
        await sameAsUnknown(`restore ${label}`, (id) => send('POST', `/v1/nodes/${id}/restore`, {}), node.id, crypto.randomUUID());
        await sameAsUnknown(`restore ${label} into alice's folder`, (id) => send('POST', `/v1/nodes/${id}/restore`, { parent_id: aliceDir.id }), node.id, crypto.randomUUID());
      }
      // Alice's own nodes aimed at bob's folders.
      for (const [what, body] of [
        ['move her file into bob\'s folder', { parent_id: bobDir.id }],
        ['move her file onto bob\'s file name', { parent_id: bobDir.id, name: 'secret.txt', replace: true }],
        ['move her file onto bob\'s folder name', { parent_id: bobDir.id, name: 'sub', replace: true }],
        ['move her file into bob\'s root', { parent_id: bobRoot.id }],
      ] as const) {
        await sameAsUnknown(what, (id) => send('PATCH', `/v1/nodes/${aliceFile.id}`, { ...body, parent_id: id }), body.parent_id, crypto.randomUUID());
      }
      await sameAsUnknown('move her folder into bob\'s folder', (id) => send('PATCH', `/v1/nodes/${aliceDir.id}`, { parent_id: id }), bobDir.id, crypto.randomUUID());
      await sameAsUnknown('restore her trashed file into bob\'s folder', (id) => send('POST', `/v1/nodes/${aliceTrashed.id}/restore`, { parent_id: id }), bobDir.id, crypto.randomUUID());
      // Versions: commit (with content alice may use, and with bob's own), restore an old version.
      const own = { base_version: 2, blocks: aliceBlocks, size: 300 };
      await sameAsUnknown('commit her blocks to bob\'s file', (id) => send('POST', `/v1/nodes/${id}/versions`, own), bobFile.id, crypto.randomUUID());
      await sameAsUnknown('commit an empty version to bob\'s file', (id) => send('POST', `/v1/nodes/${id}/versions`, { base_version: 2, blocks: [], size: 0 }), bobFile.id, crypto.randomUUID());
      await sameAsUnknown('commit bob\'s blocks to bob\'s file', (id) => send('POST', `/v1/nodes/${id}/versions`, { base_version: 2, blocks: bobBlocksV1, size: 1500 }), bobFile.id, crypto.randomUUID());
      await sameAsUnknown('restore version 1 of bob\'s file', (id) => send('POST', `/v1/nodes/${id}/versions/1/restore`, undefined), bobFile.id, crypto.randomUUID());
      t.equal(await backend.snapshot(), before, 'nothing of anyone changed');
      // Bob still sees his tree exactly as it was.
      t.same(await b.node(bobFile.id), bobNodes[3]);
      t.same((await b.allChildren(bobDir.id)).map((n) => n.name), ['secret.txt', 'sub']);
      t.same((await b.manifest(bobFile.id)).blocks, bobBlocksV2);
    });

    t.test('alice cannot download bob\'s blocks, learn from /v1/blocks/check that they exist, or commit them', async (t) => {
      const before = await backend.snapshot();
      for (const hash of bobHashes) {
        await sameAsUnknown('download bob\'s block', (h) => get(`/v1/blocks/${h}`), hash, randomHash());
        await sameAsUnknown('download a range of bob\'s block', (h) => raw(backend, 'GET', `/v1/blocks/${h}`, { token: alice.token, headers: { range: 'bytes=0-9' } }), hash, randomHash());
        const head = await raw(backend, 'HEAD', `/v1/blocks/${hash}`, { token: alice.token });
        t.equal(head.status, 404, 'HEAD of bob\'s block: 404');
        await t.rejects(a.getBlock(hash), { status: 404, code: 'not_found' });
      }
      // The check answers bob's blocks as missing, exactly like blocks nobody has, in the order asked.
      const unknown = [randomHash(), randomHash()];
      const asked = [unknown[0]!, ...bobHashes, unknown[1]!, aliceBlocks[0]!.hash];
      t.same(await a.checkBlocks(asked), { missing: asked.slice(0, -1) });
      for (const hash of bobHashes) {
        const theirs = await send('POST', '/v1/blocks/check', { hashes: [hash] });
        const nobodys = await send('POST', '/v1/blocks/check', { hashes: [unknown[0]] });
        t.equal(theirs.status, 200);
        t.same(theirs.json, { missing: [hash] });
        t.equal(theirs.text.replace(hash, 'H'), nobodys.text.replace(unknown[0]!, 'H'), 'the same answer as for an unknown block');
      }
      // Naming bob's block in her own commit is refused like naming a block nobody has.
      const theirs = await a.commit(aliceFile.id, { base_version: 1, blocks: [bobBlocksV2[0]!], size: 700 }).catch((e: unknown) => e);
      const nobodys = await a.commit(aliceFile.id, { base_version: 1, blocks: [{ hash: unknown[0]!, size: 700 }], size: 700 }).catch((e: unknown) => e);
      t.match(theirs, { status: 409, code: 'missing_blocks', extra: { missing: [bobBlocksV2[0]!.hash] } });
      t.match(nobodys, { status: 409, code: 'missing_blocks', extra: { missing: [unknown[0]] } });
      t.equal(await backend.snapshot(), before, 'probing changed nothing');
      // Bob can still read his own.
      t.equal((await b.getBlock(bobHashes[0]!)).length, 1000);
    });

    t.test('alice\'s change feed holds only her nodes and her cursor does not move with bob\'s activity', async (t) => {
      const head = (await a.changesHead()).cursor;
      const bobHead = (await b.changesHead()).cursor;
      const feedBefore = await a.changes(undefined);
      // Bob is busy: creates, renames, moves, commits, deletes.
      for (let i = 0; i < 8; i++) {
        const n = await b.create({ parent_id: bobDir.id, name: `busy-${i}`, kind: i % 2 ? 'dir' : 'file' });
        await b.update(n.id, { name: `busy-${i}-renamed` });
        if (i % 2 === 0) await commitRandomBlocks(b, n.id, 0, [50 + i]);
        await b.update(n.id, { parent_id: bobSub.id });
        if (i % 3 === 0) await b.remove(n.id);
      }
      t.not((await b.changesHead()).cursor, bobHead, 'bob\'s own cursor moved');
      t.equal((await a.changesHead()).cursor, head, 'alice\'s head did not move: the very same string');
      t.same(await a.changes(head), { changes: [], cursor: head, has_more: false }, 'nothing new for alice');
      t.same(await a.changes(undefined), feedBefore, 'alice\'s whole feed is as it was');
      // Everything alice's feed has ever shown is hers.
      const aliceIds = new Set([aliceRoot.id, aliceDir.id, aliceFile.id, aliceTrashed.id]);
      const seen: string[] = [];
      let cursor: string | undefined;
      for (;;) {
        const page = await a.changes(cursor, 2);
        seen.push(...page.changes.map((c) => c.id));
        cursor = page.cursor;
        if (!page.has_more) break;
      }
      t.same([...new Set(seen)].sort(), [...aliceIds].sort(), 'her feed names her nodes and only hers');
      t.equal(cursor, head, 'and her walk ends at her head');
      const bobSeen = new Set((await b.changes(undefined)).changes.map((c) => c.id));
      t.ok([...aliceIds].every((id) => !bobSeen.has(id)), 'and bob\'s feed none of hers');
      // A cursor bob got does not give alice his changes either: it is refused exactly like garbage.
      const before = await backend.snapshot();
      const garbage = await get('/v1/changes?cursor=c1.garbage.garbage');
      for (const bobs of [(await b.changesHead()).cursor, (await b.changes(undefined, 1)).cursor, bobHead]) {
        const res = await get(`/v1/changes?cursor=${encodeURIComponent(bobs)}`);
        t.equal(res.status, 400, 'bob\'s cursor in alice\'s request: 400');
        t.equal(res.text, garbage.text, 'the same answer as for a cursor nobody was given');
      }
      t.equal(await backend.snapshot(), before, 'trying changed nothing');
    });

    t.test('alice cannot list or revoke bob\'s devices: 404 exactly like an unknown device', async (t) => {
      const before = await backend.snapshot();
      t.same((await a.devices()).devices.map((d) => d.id), [(await a.whoami()).device.id], 'she lists only her own device');
      await sameAsUnknown('revoke bob\'s device', (id) => raw(backend, 'DELETE', `/v1/devices/${id}`, { token: alice.token }), bobDevice.id, 'AAAAAAAAAAAAAAAA');
      t.equal(await backend.snapshot(), before);
      t.same((await b.whoami()).device, bobDevice, 'bob\'s device still works');
    });

    t.test('a change of alice\'s advances her cursor by her changes alone: nothing in it tells of bob\'s', async (t) => {
      /**
       * What anyone holding a cursor can read out of it: it is opaque to clients, but signed, not
       * encrypted (`c1.<base64url JSON>.<signature>`), so this is what alice learns from hers.
       */
      const readable = (cursor: string): unknown => JSON.parse(Buffer.from(cursor.split('.')[1]!, 'base64url').toString());
      const head = (await a.changesHead()).cursor;
      const bobBefore = (await b.changesHead()).cursor;
      for (let i = 0; i < 5; i++) await b.create({ parent_id: bobRoot.id, name: `gap-${i}`, kind: 'file' });
      t.equal((await a.changesHead()).cursor, head, 'bob\'s five changes leave alice\'s head byte for byte as it was');
      t.same(await a.changes(head), { changes: [], cursor: head, has_more: false }, 'and her feed after it empty');
      const bobMid = (await b.changesHead()).cursor;
      const mine = await a.create({ parent_id: aliceRoot.id, name: 'one-more', kind: 'file' });
      for (let i = 0; i < 5; i++) await a.update(mine.id, { mtime: 1000 + i });
      t.equal((await b.changesHead()).cursor, bobMid, 'alice\'s six changes leave bob\'s head byte for byte as it was');
      t.same(await b.changes(bobMid), { changes: [], cursor: bobMid, has_more: false }, 'and his feed after it empty');
      const after = (await a.changesHead()).cursor;
      const pages: ChangesPage[] = [];
      for (let cursor = head, more = true; more; ) {
        const page = await a.changes(cursor, 1);
        pages.push(page);
        cursor = page.cursor;
        more = page.has_more;
      }
      t.same(pages.map((p) => p.changes.map((c) => c.id)), [[mine.id], [mine.id], [mine.id], [mine.id], [mine.id], [mine.id]], 'six changes of hers: six pages of one, each of hers');
      t.equal(pages.at(-1)!.cursor, after, 'ending at her new head');

      // Her cursor holds her own namespace's position, one step further; nothing of bob's.
      const positions = (cursor: string) => readable(cursor) as Array<[string, number]>;
      const [ns, seq] = positions(head)[0]!;
      t.equal(positions(head).length, 1, 'her cursor names one namespace');
      t.same(positions(after), [[ns, seq + 6]], 'six changes of hers, six steps of her cursor (bob made five meanwhile)');
      const [bobNs, bobSeq] = positions(bobBefore)[0]!;
      t.not(ns, bobNs, 'it is not bob\'s namespace');
      t.notOk(after.includes(bobNs) || JSON.stringify(readable(after)).includes(bobNs), 'and bob\'s namespace is nowhere in it');
      // And the other way round: bob's cursor counts his five changes, none of her six.
      t.same(positions(bobMid), [[bobNs, bobSeq + 5]], 'bob\'s cursor counts his five changes, not hers');
      t.notOk(bobMid.includes(ns) || JSON.stringify(readable(bobMid)).includes(ns), 'and alice\'s namespace is nowhere in it');
    });
  });
}
