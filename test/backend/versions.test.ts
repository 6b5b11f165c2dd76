import crypto from 'node:crypto';
import t, { type Test } from 'tap';
import { ApiError } from '../../protocol/errors.js';
import { StratusClient } from '../../protocol/client.js';
import type { BlockRef, CommitRequest, Manifest, VersionInfo } from '../../protocol/types.js';
import { blockHash, blockTestSetups, randomBlock, startTestBackend, stopOwnCluster, type TestBackend, type TestUser } from '../helpers/backend.js';

/**
 * Versions: commit, list, manifest, restore, and the invariants they carry (1 and 2), once per engine.
 * Every refused commit must leave the database and the block store exactly as they were.
 */

t.teardown(stopOwnCluster);

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** Runs `fn` and asserts that it changed nothing in the database or the block store. */
async function unchanged(t: Test, backend: TestBackend, what: string, fn: () => Promise<void>): Promise<void> {
  const before = await backend.snapshot();
  await fn();
  t.same(JSON.parse(await backend.snapshot()), JSON.parse(before), `${what}: database and block store unchanged`);
}

/** The ApiError a promise rejects with (fails the test if it resolves or rejects with something else). */
async function apiError(t: Test, p: Promise<unknown>): Promise<ApiError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  if (!(err instanceof ApiError)) {
    t.fail(`expected an ApiError, got ${err === null ? 'success' : String(err)}`);
    return new ApiError('internal', 'no error');
  }
  return err;
}

async function expectError(t: Test, res: Response, status: number, code?: string): Promise<Record<string, unknown>> {
  const text = await res.text();
  t.equal(res.status, status, `status ${status} (body: ${text.slice(0, 200)})`);
  const body = JSON.parse(text) as { error?: Record<string, unknown> };
  if (code !== undefined) t.equal(body.error?.code, code, `error code ${code}`);
  return body.error ?? {};
}

async function newFile(user: TestUser, name: string): Promise<string> {
  const root = await user.client.root();
  return (await user.client.create({ parent_id: root.id, name, kind: 'file' })).id;
}

/** Uploads `sizes.length` random blocks of those sizes; returns their refs. */
async function uploadBlocks(user: TestUser, sizes: number[]): Promise<BlockRef[]> {
  const refs: BlockRef[] = [];
  for (const size of sizes) {
    const block = randomBlock(size);
    refs.push(await user.client.putBlock(block.hash, block.bytes));
  }
  return refs;
}

function commitOf(base: number, blocks: BlockRef[], mtime?: number): CommitRequest {
  return { base_version: base, blocks, size: blocks.reduce((s, b) => s + b.size, 0), ...(mtime !== undefined && { mtime }) };
}

function postCommit(backend: TestBackend, token: string, id: string, body: string, headers: Record<string, string> = {}): Promise<Response> {
  return backend.fetch(`/v1/nodes/${id}/versions`, { method: 'POST', token, headers: { 'content-type': 'application/json', ...headers }, body });
}

async function allVersions(client: StratusClient, id: string, limit?: number): Promise<VersionInfo[]> {
  const out: VersionInfo[] = [];
  let before: number | undefined;
  for (;;) {
    const page = await client.versions(id, { before, limit });
    out.push(...page.versions);
    if (page.next === null) return out;
    before = page.next;
  }
}

for (const { name, engine, blocks } of blockTestSetups()) {
  t.test(`versions [${name}]`, async (t) => {
    const backend = await startTestBackend(engine, {}, { blocks });
    t.teardown(() => backend.close());
    const alice = await backend.addUser('alice');
    const bob = await backend.addUser('bob');

    t.test('commits append versions 1..N, listed newest first in pages, manifests read back by number and by head', async (t) => {
      const id = await newFile(alice, 'paged.txt');
      const blocks = await uploadBlocks(alice, [100, 200, 300, 400, 500]);
      const committed: Manifest[] = [];
      for (let v = 1; v <= 5; v++) {
        const m = await alice.client.commit(id, commitOf(v - 1, blocks.slice(0, v), 1_000_000 + v));
        t.equal(m.version, v);
        t.equal(m.base_version, v - 1);
        t.equal(m.node_id, id);
        t.same(m.blocks, blocks.slice(0, v));
        t.equal(m.size, blocks.slice(0, v).reduce((s, b) => s + b.size, 0));
        t.equal(m.mtime, 1_000_000 + v);
        committed.push(m);
      }
      const whoami = await alice.client.whoami();
      t.ok(committed.every((m) => m.device_id === whoami.device.id), 'each version records the committing device');

      const node = await alice.client.node(id);
      t.equal(node.head_version, 5);
      t.equal(node.size, 1500);
      t.equal(node.mtime, 1_000_005);

      const page1 = await alice.client.versions(id, { limit: 2 });
      t.same(page1.versions.map((v) => v.version), [5, 4]);
      t.equal(page1.next, 4);
      const page2 = await alice.client.versions(id, { limit: 2, before: page1.next! });
      t.same(page2.versions.map((v) => v.version), [3, 2]);
      const page3 = await alice.client.versions(id, { limit: 2, before: page2.next! });
      t.same(page3.versions.map((v) => v.version), [1]);
      t.equal(page3.next, null, 'the last page says so');
      const { blocks: _b, ...info5 } = committed[4]!;
      t.same(page1.versions[0], info5, 'a listed version carries the same info as the commit answer');
      t.same((await allVersions(alice.client, id)).map((v) => v.version), [5, 4, 3, 2, 1], 'one default page holds them all');

      for (const m of committed) t.same(await alice.client.manifest(id, m.version), m, `manifest of version ${m.version}`);
      t.same(await alice.client.manifest(id, 'head'), committed[4], 'head is the latest');

      await unchanged(t, backend, 'bad version reads', async () => {
        t.match(await apiError(t, alice.client.manifest(id, 6)), { status: 404, code: 'not_found' }, 'a version not committed yet is 404');
        for (const bad of ['0', '-1', '1.5', 'abc']) {
          await expectError(t, await backend.fetch(`/v1/nodes/${id}/versions/${bad}`, { token: alice.token }), 400);
        }
        await expectError(t, await backend.fetch(`/v1/nodes/${id}/versions?limit=0`, { token: alice.token }), 400);
        await expectError(t, await backend.fetch(`/v1/nodes/${id}/versions?before=x`, { token: alice.token }), 400);
      });

      const empty = await newFile(alice, 'never-committed.txt');
      t.same(await alice.client.versions(empty), { versions: [], next: null }, 'a file never committed has no versions');
      t.match(await apiError(t, alice.client.manifest(empty, 'head')), { status: 404 }, 'and no head manifest');
    });

    t.test('an empty file commits as a manifest with no blocks and size 0', async (t) => {
      const id = await newFile(alice, 'empty.txt');
      const m = await alice.client.commit(id, { base_version: 0, blocks: [], size: 0 });
      t.equal(m.version, 1);
      t.same((await alice.client.manifest(id, 1)).blocks, []);
      t.equal((await alice.client.node(id)).size, 0);
    });

    t.test('restoring an old version appends a new version with its manifest and keeps the history', async (t) => {
      const id = await newFile(alice, 'restore.txt');
      const [a, b] = await uploadBlocks(alice, [1000, 2000]);
      const v1 = await alice.client.commit(id, commitOf(0, [a!], 111));
      const v2 = await alice.client.commit(id, commitOf(1, [b!, a!], 222));
      const v3 = await alice.client.restoreVersion(id, 1);
      t.equal(v3.version, 3);
      t.equal(v3.base_version, 2);
      t.same(v3.blocks, v1.blocks, 'the old manifest');
      t.equal(v3.size, v1.size);
      t.equal(v3.mtime, v1.mtime);
      const node = await alice.client.node(id);
      t.equal(node.head_version, 3);
      t.equal(node.size, 1000);
      t.same(await alice.client.manifest(id, 1), v1, 'version 1 untouched');
      t.same(await alice.client.manifest(id, 2), v2, 'version 2 untouched');
      t.same(await alice.client.manifest(id, 'head'), v3);
      t.same((await alice.client.versions(id)).versions.map((v) => v.version), [3, 2, 1]);

      await unchanged(t, backend, 'bad restores', async () => {
        t.match(await apiError(t, alice.client.restoreVersion(id, 9)), { status: 404 });
        await expectError(t, await backend.fetch(`/v1/nodes/${id}/versions/0/restore`, { token: alice.token, method: 'POST' }), 400);
        t.match(await apiError(t, bob.client.restoreVersion(id, 1)), { status: 404, code: 'not_found' }, "bob cannot restore alice's file");
      });
    });

    t.test('a stale base_version is refused with 409 stale_version and the head version, changing nothing', async (t) => {
      const id = await newFile(alice, 'stale.txt');
      const [a, b] = await uploadBlocks(alice, [10, 20]);
      await alice.client.commit(id, commitOf(0, [a!]));
      await alice.client.commit(id, commitOf(1, [b!]));
      await unchanged(t, backend, 'stale commits', async () => {
        for (const base of [0, 1, 3, 1000]) {
          const err = await apiError(t, alice.client.commit(id, commitOf(base, [a!])));
          t.match(err, { status: 409, code: 'stale_version', extra: { head_version: 2 } }, `base_version ${base}`);
        }
      });
      t.equal((await alice.client.commit(id, commitOf(2, [a!]))).version, 3, 'the head as base succeeds');
    });

    t.test('invariant 2: a commit naming blocks the store does not hold is refused with 409 listing exactly the missing hashes', async (t) => {
      const id = await newFile(alice, 'missing.txt');
      const [held, other] = await uploadBlocks(alice, [500, 600]);
      const x = randomBlock(300);
      const y = randomBlock(400);
      const blocks = [held!, { hash: x.hash, size: 300 }, { hash: y.hash, size: 400 }, { hash: x.hash, size: 300 }];
      const versioned = await newFile(alice, 'missing-v2.txt');
      await alice.client.commit(versioned, commitOf(0, [other!]));
      await unchanged(t, backend, 'commits with missing blocks', async () => {
        for (const [file, base] of [[id, 0], [versioned, 1]] as const) {
          const err = await apiError(t, alice.client.commit(file, commitOf(base, blocks)));
          t.match(err, { status: 409, code: 'missing_blocks' }, `base_version ${base}`);
          t.same([...((err.extra.missing as string[] | undefined) ?? [])].sort(), [x.hash, y.hash].sort(), 'each missing hash once, and only those');
        }
      });
      t.equal((await alice.client.node(id)).head_version, 0, 'no version was created');
      t.same(await alice.client.manifest(versioned, 'head'), await alice.client.manifest(versioned, 1), 'the head did not move');

      // Once the blocks are uploaded the same commit goes through.
      await alice.client.putBlock(x.hash, x.bytes);
      await alice.client.putBlock(y.hash, y.bytes);
      const v = await alice.client.commit(id, commitOf(0, blocks));
      t.equal(v.version, 1);
      t.same(v.blocks, blocks, 'a manifest may name a block twice');
    });

    t.test('a size that is not the sum of the block sizes is refused with 400, changing nothing', async (t) => {
      const id = await newFile(alice, 'size.txt');
      const blocks = await uploadBlocks(alice, [100, 200]);
      await unchanged(t, backend, 'wrong total size', async () => {
        for (const size of [0, 299, 301, 3000]) {
          t.match(await apiError(t, alice.client.commit(id, { base_version: 0, blocks, size })), { status: 400, code: 'bad_manifest' }, `size ${size}`);
        }
        t.match(await apiError(t, alice.client.commit(id, { base_version: 0, blocks: [], size: 1 })), { status: 400 }, 'no blocks but size 1');
      });
    });

    t.test('a block size in the manifest that differs from the stored size is refused with 400, changing nothing', async (t) => {
      const id = await newFile(alice, 'blocksize.txt');
      const [a] = await uploadBlocks(alice, [1000]);
      await unchanged(t, backend, 'wrong block size', async () => {
        for (const size of [999, 1001, 1]) {
          const err = await apiError(t, alice.client.commit(id, { base_version: 0, blocks: [{ hash: a!.hash, size }], size }));
          t.match(err, { status: 400, code: 'bad_manifest' }, `block of 1000 bytes declared as ${size}`);
        }
      });
    });

    t.test('malformed commits are refused with 400, changing nothing', async (t) => {
      const id = await newFile(alice, 'malformed.txt');
      const [a] = await uploadBlocks(alice, [10]);
      const good = { base_version: 0, blocks: [a], size: 10 };
      await unchanged(t, backend, 'malformed commits', async () => {
        await expectError(t, await postCommit(backend, alice.token, id, '{"base_version": 0, "blocks": ['), 400, 'malformed_json');
        await expectError(t, await postCommit(backend, alice.token, id, 'null'), 400);
        await expectError(t, await postCommit(backend, alice.token, id, ''), 400);
        await expectError(t, await postCommit(backend, alice.token, id, '[]'), 400);
        const variants: Array<[string, unknown]> = [
          ['no base_version', { blocks: good.blocks, size: 10 }],
          ['negative base_version', { ...good, base_version: -1 }],
          ['fractional base_version', { ...good, base_version: 0.5 }],
          ['base_version as a string', { ...good, base_version: '0' }],
          ['blocks not an array', { ...good, blocks: 'x' }],
          ['a block without size', { ...good, blocks: [{ hash: a!.hash }] }],
          ['a block of size 0', { ...good, blocks: [{ hash: a!.hash, size: 0 }], size: 0 }],
          ['a block bigger than max_block_size', { ...good, blocks: [{ hash: a!.hash, size: 4 * MiB + 1 }], size: 4 * MiB + 1 }],
          ['an uppercase hash', { ...good, blocks: [{ hash: a!.hash.toUpperCase(), size: 10 }] }],
          ['a negative size', { ...good, blocks: [], size: -1 }],
          ['a fractional mtime', { ...good, mtime: 1.5 }],
        ];
        for (const [what, body] of variants) {
          const error = await expectError(t, await postCommit(backend, alice.token, id, JSON.stringify(body)), 400);
          t.type(error.message, 'string', `${what}: refused with a message`);
        }
        await expectError(t, await postCommit(backend, alice.token, id, JSON.stringify(good), { 'content-type': 'text/plain' }), 415);
      });
    });

    t.test('committing to a folder is 409, to an unknown or foreign node 404, to a bad id 400, to a file in the trash 409', async (t) => {
      const root = await alice.client.root();
      const dir = await alice.client.create({ parent_id: root.id, name: 'folder', kind: 'dir' });
      const [a] = await uploadBlocks(alice, [10]);
      const bobsFile = await newFile(bob, 'bobs.txt');
      const trashed = await newFile(alice, 'trashed.txt');
      await alice.client.remove(trashed);
      await unchanged(t, backend, 'commits to the wrong node', async () => {
        t.match(await apiError(t, alice.client.commit(dir.id, commitOf(0, [a!]))), { status: 409, code: 'is_a_directory' }, 'a folder');
        t.match(await apiError(t, alice.client.commit(root.id, commitOf(0, [a!]))), { status: 409, code: 'is_a_directory' }, 'the root');
        t.match(await apiError(t, alice.client.versions(dir.id)), { status: 409 }, "a folder's versions");
        const unknown = await apiError(t, alice.client.commit(crypto.randomUUID(), commitOf(0, [a!])));
        t.match(unknown, { status: 404, code: 'not_found' }, 'an unknown node');
        const foreign = await apiError(t, alice.client.commit(bobsFile, commitOf(0, [a!])));
        t.match(foreign, { status: 404, code: 'not_found' }, "bob's file");
        t.equal(foreign.message, unknown.message, "bob's file is answered like a node that does not exist");
        t.match(await apiError(t, alice.client.versions(bobsFile)), { status: 404 }, "bob's file's versions");
        t.match(await apiError(t, alice.client.manifest(bobsFile, 'head')), { status: 404 }, "bob's file's manifest");
        t.match(await apiError(t, alice.client.commit('not-a-node-id', commitOf(0, [a!]))), { status: 400 }, 'a malformed id');
        t.match(await apiError(t, alice.client.commit(trashed, commitOf(0, [a!]))), { status: 409, code: 'node_deleted' }, 'a file in the trash');
      });
    });

    t.test('invariant 1: a reader sees the old version or the new one, never a mix', async (t) => {
      const id = await newFile(alice, 'atomic.bin');
      const VERSIONS = 30;
      // Block i has size 1000+i, so every version below has a distinct manifest, size and mtime.
      const pool = await uploadBlocks(alice, Array.from({ length: VERSIONS }, (_, i) => 1000 + i));
      const planned = new Map<number, CommitRequest>();
      for (let v = 1; v <= VERSIONS; v++) {
        // Rotate and cut the pool differently per version: no version is a prefix of another.
        const blocks = [...pool.slice(v - 1), ...pool.slice(0, v - 1)].slice(0, 1 + (v % 7));
        planned.set(v, commitOf(v - 1, blocks, 5_000_000 + v));
      }
      const readerClients = Array.from({ length: 4 }, () => new StratusClient({ server: backend.url, token: alice.token, connections: 2 }));
      t.teardown(() => Promise.all(readerClients.map((c) => c.close())));

      let done = false;
      const problems: string[] = [];
      let observations = 0;
      const seen = new Set<number>();
      const matchesPlan = (m: Manifest, where: string): void => {
        const plan = planned.get(m.version);
        if (!plan) {
          problems.push(`${where}: version ${m.version} was never committed`);
        } else if (JSON.stringify(m.blocks) !== JSON.stringify(plan.blocks) || m.size !== plan.size || m.mtime !== plan.mtime || m.base_version !== m.version - 1) {
          problems.push(`${where}: version ${m.version} is not what was committed: ${JSON.stringify(m)}`);
        }
      };
      const reader = async (client: StratusClient) => {
        let lastHead = 0;
        while (!done) {
          const node = await client.node(id);
          if (node.head_version < lastHead) problems.push(`head went back from ${lastHead} to ${node.head_version}`);
          lastHead = node.head_version;
          if (node.head_version > 0) {
            // The version the node points at exists and agrees with the node's size and mtime.
            const m = await client.manifest(id, node.head_version);
            matchesPlan(m, 'manifest of node.head_version');
            if (m.size !== node.size || m.mtime !== node.mtime) problems.push(`node says v${node.head_version} size ${node.size} mtime ${node.mtime}, its manifest says size ${m.size} mtime ${m.mtime}`);
            const head = await client.manifest(id, 'head');
            matchesPlan(head, 'manifest of head');
            if (head.version < node.head_version) problems.push(`head manifest v${head.version} older than the node's head v${node.head_version} read before`);
            seen.add(m.version);
          }
          observations++;
        }
      };
      const readers = readerClients.map((client) => reader(client).catch((err: unknown) => void problems.push(`a read failed: ${String(err)}`)));
      try {
        for (let v = 1; v <= VERSIONS; v++) await alice.client.commit(id, planned.get(v)!);
      } finally {
        done = true;
      }
      await Promise.all(readers);
      t.same(problems, [], 'every observation was exactly one committed version');
      t.ok(observations >= readerClients.length, `readers made ${observations} observations of ${seen.size} distinct versions`);
      t.equal((await alice.client.node(id)).head_version, VERSIONS);
    });

    t.test('20 clients committing to the same file at once: exactly one wins per base_version, versions stay 1..N without gaps, no error 500', async (t) => {
      const CLIENTS = 20;
      const K = 3;
      const id = await newFile(alice, 'contended.bin');
      // One device (token) per client, and one block per client so each version shows who won it.
      const devices = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => alice.client.createDevice(`contender ${i}`)));
      const clients = devices.map((d) => new StratusClient({ server: backend.url, token: d.token, connections: 2 }));
      t.teardown(() => Promise.all(clients.map((c) => c.close())));
      const blocks = await uploadBlocks(alice, Array.from({ length: CLIENTS }, (_, i) => 100 + i));

      const unexpected: unknown[] = [];
      let conflicts = 0;
      const wins: number[][] = clients.map(() => []);
      await Promise.all(
        clients.map(async (client, i) => {
          let base = (await client.node(id)).head_version;
          while (wins[i]!.length < K) {
            try {
              const m = await client.commit(id, commitOf(base, [blocks[i]!]));
              if (m.version !== base + 1) unexpected.push(`client ${i}: base ${base} gave version ${m.version}`);
              wins[i]!.push(m.version);
              base = (await client.node(id)).head_version;
            } catch (err) {
              if (err instanceof ApiError && err.status === 409 && err.code === 'stale_version' && typeof err.extra.head_version === 'number' && err.extra.head_version > base) {
                conflicts++;
                base = err.extra.head_version; // retry on the head the refusal names, as a client does
                continue;
              }
              unexpected.push(err);
              return; // stop this client: the assertion below reports it
            }
          }
        }),
      );
      t.same(unexpected, [], 'every refusal was 409 stale_version naming a newer head');
      t.ok(wins.every((w) => w.length === K), `each client committed ${K} times (after ${conflicts} conflicts)`);

      const listed = await allVersions(alice.client, id, 7);
      t.same(listed.map((v) => v.version), Array.from({ length: CLIENTS * K }, (_, i) => CLIENTS * K - i), `versions are exactly 1..${CLIENTS * K}`);
      t.ok(listed.every((v) => v.base_version === v.version - 1), 'each version is based on the one before');
      t.same([...wins.flat()].sort((a, b) => a - b), Array.from({ length: CLIENTS * K }, (_, i) => i + 1), 'each version was won by exactly one commit');
      const deviceIndex = new Map(devices.map((d, i) => [d.device.id, i]));
      const perDevice = new Map<number, number>();
      for (const v of listed) {
        const i = deviceIndex.get(v.device_id!);
        if (i === undefined) {
          t.fail(`version ${v.version} records an unknown device ${v.device_id}`);
          continue;
        }
        perDevice.set(i, (perDevice.get(i) ?? 0) + 1);
        t.ok(wins[i]!.includes(v.version), `version ${v.version} was won by client ${i}, whose device it records`);
        t.same((await alice.client.manifest(id, v.version)).blocks, [blocks[i]], `version ${v.version} holds client ${i}'s manifest`);
      }
      t.same([...perDevice.values()], Array.from({ length: CLIENTS }, () => K), 'every device appears K times');
      const node = await alice.client.node(id);
      t.equal(node.head_version, CLIENTS * K);
    });

    t.test("a 10 GiB file's manifest (2,560 blocks of 4 MiB) is accepted and read back", async (t) => {
      const COUNT = 2560;
      const now = Date.now();
      const hashes = Array.from({ length: COUNT }, (_, i) => blockHash(Buffer.from(`synthetic 4 MiB block ${i}`)));
      // Uploading 10 GiB of distinct blocks would take minutes. A commit consults only the
      // database (the blocks and block_owners rows that a verified upload writes), so the rows of
      // 2,560 uploads are inserted directly; no test downloads these blocks.
      for (let i = 0; i < COUNT; i += 200) {
        const batch = hashes.slice(i, i + 200);
        await backend.db('blocks').insert(batch.map((hash) => ({ hash, size: 4 * MiB, created_at: now })));
        await backend.db('block_owners').insert(batch.map((hash) => ({ user_id: alice.id, hash, created_at: now })));
      }
      const id = await newFile(alice, 'ten-gib.bin');
      const blocks = hashes.map((hash) => ({ hash, size: 4 * MiB }));
      const m = await alice.client.commit(id, { base_version: 0, blocks, size: 10 * GiB, mtime: 42 });
      t.equal(m.size, 10 * GiB);
      t.equal(m.blocks.length, COUNT);
      const back = await alice.client.manifest(id, 'head');
      t.equal(back.size, 10 * GiB, 'size is exactly 10 GiB');
      t.equal(back.blocks.length, COUNT);
      t.same(back.blocks, blocks, 'all 2,560 entries, in order');
      t.same(await alice.client.manifest(id, 1), back);
      t.equal((await alice.client.node(id)).size, 10 * GiB, 'the node says 10 GiB');
      t.equal((await alice.client.versions(id)).versions[0]?.size, 10 * GiB);
      // A second version of the same huge file, as a restore does, also goes through.
      const restored = await alice.client.restoreVersion(id, 1);
      t.equal(restored.size, 10 * GiB);
      t.equal(restored.blocks.length, COUNT);
    });
  });

  t.test(`versions under small limits [${name}]`, async (t) => {
    const MAX_JSON = 16 * KiB;
    const MAX_BLOCKS = 100;
    const backend = await startTestBackend(engine, { limits: { max_commit_json_bytes: MAX_JSON, max_manifest_blocks: MAX_BLOCKS } }, { blocks });
    t.teardown(() => backend.close());
    const alice = await backend.addUser('alice');
    const id = await newFile(alice, 'limits.bin');
    const [a] = await uploadBlocks(alice, [10]);

    t.test('a commit body over max_commit_json_bytes is refused with 413, with a Content-Length and chunked', async (t) => {
      const body = JSON.stringify({ ...commitOf(0, [a!]), padding: 'x'.repeat(MAX_JSON) });
      await unchanged(t, backend, 'oversized body', async () => {
        await expectError(t, await postCommit(backend, alice.token, id, body), 413, 'too_large');
        const stream = new ReadableStream<Uint8Array>({
          start(controller) {
            const bytes = Buffer.from(body);
            for (let i = 0; i < bytes.length; i += 4 * KiB) controller.enqueue(bytes.subarray(i, i + 4 * KiB));
            controller.close();
          },
        });
        const chunked = await backend.fetch(`/v1/nodes/${id}/versions`, {
          method: 'POST',
          token: alice.token,
          headers: { 'content-type': 'application/json' },
          body: stream,
          duplex: 'half',
        } as RequestInit & { token: string });
        await expectError(t, chunked, 413, 'too_large');
      });
    });

    t.test('a manifest over max_manifest_blocks is refused with 413; exactly the limit is accepted', async (t) => {
      // Blocks of a realistic size (the chunker's minimum): the limit on blocks per byte does not apply.
      const [big] = await uploadBlocks(alice, [256 * KiB]);
      await unchanged(t, backend, 'oversized manifest', async () => {
        const err = await apiError(t, alice.client.commit(id, commitOf(0, Array.from({ length: MAX_BLOCKS + 1 }, () => big!))));
        t.match(err, { status: 413, code: 'too_large', extra: { max_manifest_blocks: MAX_BLOCKS } });
      });
      const m = await alice.client.commit(id, commitOf(0, Array.from({ length: MAX_BLOCKS }, () => big!)));
      t.equal(m.blocks.length, MAX_BLOCKS);
    });

    t.test('past manifest_free_blocks, a manifest of tiny blocks is refused (400 bad_manifest): no client cuts files so', async (t) => {
      const { manifest_free_blocks: free, min_bytes_per_block: perBlock } = backend.settings.limits;
      t.equal(perBlock, backend.settings.chunking.min / 4, 'the floor is a quarter of the chunker minimum');
      const tiny = await newFile(alice, 'tiny.bin');
      await unchanged(t, backend, 'a manifest of tiny blocks', async () => {
        const err = await apiError(t, alice.client.commit(tiny, commitOf(0, Array.from({ length: free + 1 }, () => a!))));
        t.match(err, { status: 400, code: 'bad_manifest', extra: { manifest_free_blocks: free, min_bytes_per_block: perBlock } });
      });
      t.equal((await alice.client.commit(tiny, commitOf(0, Array.from({ length: free }, () => a!)))).blocks.length, free, `${free} tiny blocks are fine`);
    });
  });
}
