import diagnostics from 'node:diagnostics_channel';
import http, { type IncomingMessage } from 'node:http';
import net from 'node:net';
import path from 'node:path';
import type { Readable } from 'node:stream';
import t, { type Test } from 'tap';
import type { PutOptions } from '../../backend/blockstore/blockstore.js';
import { StratusClient } from '../../protocol/client.js';
import { ApiError } from '../../protocol/errors.js';
import { blockHash, blockTestSetups, randomBlock, startTestBackend, stopOwnCluster, type TestBackend } from '../helpers/backend.js';

/**
 * The block routes: PUT/GET /v1/blocks/:hash and POST /v1/blocks/check, run once per database
 * engine on the disk store and once on the GCS store (emulator).
 * Every refused request must also leave the database and the block store exactly as they were.
 */

t.teardown(stopOwnCluster);

const MAX_BLOCK = 64 * 1024;
const MAX_CHECK = 10;

async function expectError(t: Test, res: Response, status: number, code?: string): Promise<Record<string, unknown>> {
  const text = await res.text();
  t.equal(res.status, status, `status ${status} (body: ${text.slice(0, 200)})`);
  let body: { error?: Record<string, unknown> } = {};
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    t.fail(`error body is not JSON: ${text.slice(0, 200)}`);
  }
  t.type(body.error?.message, 'string', 'the error carries a message');
  if (code !== undefined) t.equal(body.error?.code, code, `error code ${code}`);
  return body.error ?? {};
}

/** Runs `fn` and asserts that it changed nothing in the database or the block store. */
async function unchanged(t: Test, backend: TestBackend, what: string, fn: () => Promise<void>): Promise<void> {
  const before = await backend.snapshot();
  await fn();
  t.same(JSON.parse(await backend.snapshot()), JSON.parse(before), `${what}: database and block store unchanged`);
}

/** A request body without a Content-Length (sent chunked). */
function chunked(bytes: Uint8Array, chunk = 16 * 1024): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (let i = 0; i < bytes.length; i += chunk) controller.enqueue(bytes.subarray(i, i + chunk));
      controller.close();
    },
  });
}

function put(backend: TestBackend, hash: string, body: Uint8Array | ReadableStream<Uint8Array>, token: string | undefined, headers: Record<string, string> = {}): Promise<Response> {
  return backend.fetch(`/v1/blocks/${hash}`, {
    method: 'PUT',
    token,
    headers: { 'content-type': 'application/octet-stream', ...headers },
    body,
    ...(body instanceof ReadableStream && { duplex: 'half' }),
  } as RequestInit & { token?: string });
}

function check(backend: TestBackend, body: string, token: string | undefined): Promise<Response> {
  return backend.fetch('/v1/blocks/check', { method: 'POST', token, headers: { 'content-type': 'application/json' }, body });
}

/** How many files (objects on GCS) the store holds for `hash`: a second copy would be a second one. */
async function copiesInStore(backend: TestBackend, hash: string): Promise<number> {
  return (await backend.storeFiles()).filter((e) => path.basename(e) === hash).length;
}

/**
 * GET of a block's bytes as the backend serves them. On GCS the plain GET answers 307 to a signed
 * URL (test/backend/signed-urls.test.ts); `?direct=1` is the backend's own path, the one whose
 * headers and ranges these tests check on every store.
 */
function getBytes(backend: TestBackend, hash: string, init: RequestInit & { token?: string }): Promise<Response> {
  return backend.fetch(`/v1/blocks/${hash}${backend.blocks === 'gcs' ? '?direct=1' : ''}`, init);
}

/** Wraps store.put to observe the puts the server starts, so a test can wait for each to settle. */
function watchPuts(backend: TestBackend) {
  const store = backend.store;
  const original = store.put;
  const started: Array<Promise<'stored' | Error>> = [];
  const waiters: Array<() => void> = [];
  store.put = (hash: string, body: Readable, opts?: PutOptions) => {
    const p = original.call(store, hash, body, opts);
    started.push(p.then(() => 'stored' as const, (err: Error) => err));
    waiters.shift()?.();
    return p;
  };
  return {
    started,
    /** Resolves once the next put has started. */
    nextPut: () => new Promise<void>((resolve) => waiters.push(resolve)),
    restore: () => {
      store.put = original;
    },
  };
}

/** Fails instead of hanging forever when a promise never settles (a guard, not a wait). */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** A raw socket that sends a PUT's headers announcing `declared` bytes, then only `sent`. */
async function partialUpload(backend: TestBackend, token: string, hash: string, declared: number, sent: Buffer, chunkedEncoding = false): Promise<net.Socket> {
  const url = new URL(backend.url);
  const socket = net.connect(Number(url.port), url.hostname);
  socket.on('error', () => {});
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const lengthHeader = chunkedEncoding ? 'Transfer-Encoding: chunked' : `Content-Length: ${declared}`;
  socket.write(`PUT /v1/blocks/${hash} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/octet-stream\r\n${lengthHeader}\r\n\r\n`);
  if (chunkedEncoding) socket.write(`${sent.length.toString(16)}\r\n`);
  socket.write(sent);
  return socket;
}

/**
 * Makes the backend's database wait until the returned function is called: on SQLite a transaction
 * holds the one pooled connection; on PostgreSQL it locks the devices table that authentication reads.
 */
async function holdDatabase(backend: TestBackend): Promise<() => Promise<void>> {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let held!: () => void;
  const isHeld = new Promise<void>((resolve) => (held = resolve));
  const done = backend.db.transaction(async (trx) => {
    await trx.raw(backend.engine === 'postgres' ? 'LOCK TABLE devices IN ACCESS EXCLUSIVE MODE' : 'SELECT 1');
    held();
    await gate;
  });
  await Promise.race([isHeld, done]);
  return async () => {
    release();
    await done;
  };
}

/**
 * Resolves when the in-process server has received a request for `url` (diagnostics channel); its
 * `closed` resolves once the server has seen that request's connection close.
 */
function serverSideRequest(url: string): Promise<{ closed: Promise<void> }> {
  return new Promise((resolve) => {
    const channel = diagnostics.channel('http.server.request.start');
    const onStart = (message: unknown) => {
      const { request, socket } = message as { request: IncomingMessage; socket: net.Socket };
      if (request.url !== url) return;
      channel.unsubscribe(onStart);
      const closed = Promise.all([new Promise((r) => request.once('close', r)), new Promise((r) => socket.once('close', r))]).then(() => undefined);
      resolve({ closed });
    };
    channel.subscribe(onStart);
  });
}

t.test('the client cuts the requested range out of a 200 answer from a server that ignores Range', async (t) => {
  const block = randomBlock(1000);
  const server = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(block.bytes));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const client = new StratusClient({ server: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, token: 'stx_x' });
  t.teardown(() => client.close());
  t.same(await client.getBlock(block.hash, { offset: 100, length: 50 }), block.bytes.subarray(100, 150));
  t.same(await client.getBlock(block.hash, { offset: 990, length: 50 }), block.bytes.subarray(990));
  t.same(await client.getBlock(block.hash), block.bytes);
});

for (const setup of blockTestSetups()) {
  t.test(`blocks [${setup.name}]`, async (t) => {
    const backend = await startTestBackend(setup.engine, { limits: { max_block_size: MAX_BLOCK, max_check_hashes: MAX_CHECK } }, { blocks: setup.blocks });
    t.teardown(() => backend.close());
    const alice = await backend.addUser('alice');
    const bob = await backend.addUser('bob');

    t.test('an uploaded block is reported present by check and downloads whole with its headers', async (t) => {
      const block = randomBlock(5000);
      t.same(await alice.client.checkBlocks([block.hash, block.hash]), { missing: [block.hash] }, 'missing before upload, listed once');
      const res = await put(backend, block.hash, block.bytes, alice.token);
      t.equal(res.status, 201);
      t.same(await res.json(), { hash: block.hash, size: 5000 });
      t.same(await alice.client.checkBlocks([block.hash]), { missing: [] });
      // A PUT is idempotent: the same block again succeeds and changes nothing but the audit trail.
      t.same(await alice.client.putBlock(block.hash, block.bytes), { hash: block.hash, size: 5000 });
      t.equal(await copiesInStore(backend, block.hash), 1);

      const get = await getBytes(backend, block.hash, { token: alice.token });
      t.equal(get.status, 200);
      t.equal(get.headers.get('content-length'), '5000');
      t.equal(get.headers.get('accept-ranges'), 'bytes');
      t.equal(get.headers.get('content-type'), 'application/octet-stream');
      t.same(Buffer.from(await get.arrayBuffer()), block.bytes);
    });

    t.test('a block of exactly max_block_size is accepted, with a Content-Length and chunked', async (t) => {
      const a = randomBlock(MAX_BLOCK);
      const b = randomBlock(MAX_BLOCK);
      t.equal((await put(backend, a.hash, a.bytes, alice.token)).status, 201);
      t.equal((await put(backend, b.hash, chunked(b.bytes), alice.token)).status, 201);
      t.same(await alice.client.getBlock(a.hash), a.bytes);
      t.same(await alice.client.getBlock(b.hash), b.bytes);
    });

    t.test('GET with Range answers 206 with Content-Range; unsatisfiable ranges answer 416', async (t) => {
      const block = randomBlock(1000);
      await alice.client.putBlock(block.hash, block.bytes);
      const cases: Array<[string, number, number]> = [
        ['bytes=10-19', 10, 19],
        ['bytes=0-0', 0, 0],
        ['bytes=-100', 900, 999], // suffix range: the last 100 bytes
        ['bytes=-5000', 0, 999], // a suffix longer than the block is the whole block
        ['bytes=990-', 990, 999], // open range
        ['bytes=900-5000', 900, 999], // last-pos past the end is clamped
      ];
      for (const [range, start, end] of cases) {
        const res = await getBytes(backend, block.hash, { token: alice.token, headers: { range } });
        t.equal(res.status, 206, `${range}: 206`);
        t.equal(res.headers.get('content-range'), `bytes ${start}-${end}/1000`, `${range}: Content-Range`);
        t.equal(res.headers.get('content-length'), String(end - start + 1), `${range}: Content-Length`);
        t.same(Buffer.from(await res.arrayBuffer()), block.bytes.subarray(start, end + 1), `${range}: exactly those bytes`);
      }
      for (const range of ['bytes=1000-', 'bytes=5000-6000', 'bytes=-0']) {
        const res = await getBytes(backend, block.hash, { token: alice.token, headers: { range } });
        t.equal(res.headers.get('content-range'), 'bytes */1000', `${range}: Content-Range names the size (RFC 9110)`);
        const error = await expectError(t, res, 416, 'range_not_satisfiable');
        t.equal(error.size, 1000, `${range}: the error tells the block size`);
      }
      // A range whose last-pos is before its first-pos is not a range: the whole block, 200.
      const inverted = await getBytes(backend, block.hash, { token: alice.token, headers: { range: 'bytes=10-9' } });
      t.equal(inverted.status, 200);
      t.same(Buffer.from(await inverted.arrayBuffer()), block.bytes);
      // What the client library returns for (offset, length).
      t.same(await alice.client.getBlock(block.hash, { offset: 500, length: 250 }), block.bytes.subarray(500, 750));
      t.same(await alice.client.getBlock(block.hash, { offset: 900, length: 500 }), block.bytes.subarray(900), 'fewer bytes at the end of the block');
      t.same(await alice.client.getBlock(block.hash, { offset: 10, length: 0 }), Buffer.alloc(0), 'a zero-length read is empty, not the whole block');
    });

    t.test('a malformed block id (uppercase, short, long, non-hex) is refused with 400 bad_hash', async (t) => {
      const block = randomBlock(100);
      await alice.client.putBlock(block.hash, block.bytes);
      const bads = [block.hash.toUpperCase(), block.hash.slice(0, 63), `${block.hash}0`, `${block.hash.slice(0, 63)}g`, 'not-a-hash'];
      await unchanged(t, backend, 'bad ids', async () => {
        for (const bad of bads) {
          await expectError(t, await put(backend, bad, block.bytes, alice.token), 400, 'bad_hash');
          await expectError(t, await backend.fetch(`/v1/blocks/${bad}`, { token: alice.token }), 400, 'bad_hash');
          const res = await check(backend, JSON.stringify({ hashes: [block.hash, bad] }), alice.token);
          await expectError(t, res, 400);
        }
      });
    });

    t.test('invariant 3: bytes sent under a wrong id are never stored nor visible (400 hash_mismatch)', async (t) => {
      const real = randomBlock(3000);
      const other = randomBlock(3000);
      await unchanged(t, backend, 'mismatched upload', async () => {
        await expectError(t, await put(backend, other.hash, real.bytes, alice.token), 400, 'hash_mismatch');
        await expectError(t, await put(backend, other.hash, chunked(real.bytes, 1000), alice.token), 400, 'hash_mismatch');
        // One byte off at the very end.
        const flipped = Buffer.from(real.bytes);
        flipped[flipped.length - 1]! ^= 1;
        await expectError(t, await put(backend, real.hash, flipped, alice.token), 400, 'hash_mismatch');
      });
      t.same(await alice.client.checkBlocks([other.hash, real.hash]), { missing: [other.hash, real.hash] });
      t.equal(await backend.store.has(other.hash), false, 'nothing stored under the wrong id');
      await expectError(t, await backend.fetch(`/v1/blocks/${other.hash}`, { token: alice.token }), 404, 'not_found');

      // Garbage under the id of a block the store already holds neither replaces it nor grants access.
      await alice.client.putBlock(real.hash, real.bytes);
      await unchanged(t, backend, 'garbage under a stored id', async () => {
        await expectError(t, await put(backend, real.hash, other.bytes, bob.token), 400, 'hash_mismatch');
      });
      t.same(await alice.client.getBlock(real.hash), real.bytes, 'the stored block is intact');
      t.same(await bob.client.checkBlocks([real.hash]), { missing: [real.hash] }, 'bob gained no access by sending wrong bytes');
    });

    t.test('a body over max_block_size is refused with 413, with a Content-Length and chunked', async (t) => {
      for (const size of [MAX_BLOCK + 1, 4 * MAX_BLOCK]) {
        const block = randomBlock(size);
        await unchanged(t, backend, `${size} bytes`, async () => {
          await expectError(t, await put(backend, block.hash, block.bytes, alice.token), 413, 'too_large');
          await expectError(t, await put(backend, block.hash, chunked(block.bytes), alice.token), 413, 'too_large');
          await t.rejects(alice.client.putBlock(block.hash, block.bytes), { code: 'too_large', status: 413 });
        });
      }
      // The server still serves normally afterwards.
      const ok = randomBlock(100);
      t.same(await alice.client.putBlock(ok.hash, ok.bytes), { hash: ok.hash, size: 100 });
    });

    t.test('an empty body is refused with 400', async (t) => {
      const empty = blockHash(new Uint8Array(0));
      await unchanged(t, backend, 'empty upload', async () => {
        await expectError(t, await put(backend, empty, new Uint8Array(0), alice.token), 400);
        await expectError(t, await put(backend, empty, chunked(new Uint8Array(0)), alice.token), 400);
      });
    });

    t.test('a missing or bad token is refused with 401 on every block route', async (t) => {
      const block = randomBlock(100);
      await alice.client.putBlock(block.hash, block.bytes);
      const fresh = randomBlock(100);
      await unchanged(t, backend, 'unauthenticated requests', async () => {
        for (const token of [undefined, 'stx_not-a-real-token', alice.token.slice(0, -1), '']) {
          await expectError(t, await put(backend, fresh.hash, fresh.bytes, token), 401, 'unauthorized');
          await expectError(t, await backend.fetch(`/v1/blocks/${block.hash}`, { token }), 401, 'unauthorized');
          await expectError(t, await check(backend, JSON.stringify({ hashes: [block.hash] }), token), 401, 'unauthorized');
        }
        const basic = await backend.fetch(`/v1/blocks/${block.hash}`, { headers: { authorization: `Basic ${Buffer.from('alice:x').toString('base64')}` } });
        await expectError(t, basic, 401, 'unauthorized');
      });
    });

    t.test('check refuses malformed JSON (400 malformed_json), a bad shape (400) and too many hashes (413)', async (t) => {
      const hashes = Array.from({ length: MAX_CHECK + 1 }, () => randomBlock(10).hash);
      await unchanged(t, backend, 'bad checks', async () => {
        await expectError(t, await check(backend, '{"hashes": [', alice.token), 400, 'malformed_json');
        await expectError(t, await check(backend, 'not json', alice.token), 400, 'malformed_json');
        await expectError(t, await check(backend, '', alice.token), 400);
        await expectError(t, await check(backend, '{}', alice.token), 400);
        await expectError(t, await check(backend, '{"hashes": "abc"}', alice.token), 400);
        await expectError(t, await check(backend, '{"hashes": [42]}', alice.token), 400);
        const tooMany = await check(backend, JSON.stringify({ hashes }), alice.token);
        const error = await expectError(t, tooMany, 413, 'too_large');
        t.equal(error.max_check_hashes, MAX_CHECK, 'the error names the limit');
      });
      t.same(await alice.client.checkBlocks(hashes.slice(0, MAX_CHECK)), { missing: hashes.slice(0, MAX_CHECK) }, 'exactly the limit is fine');
      t.same(await alice.client.checkBlocks([]), { missing: [] });
    });

    t.test('a client that disconnects mid-upload leaves nothing stored and no temp file', async (t) => {
      const watch = watchPuts(backend);
      t.teardown(watch.restore);
      const cases: Array<{ what: string; chunkedEncoding: boolean }> = [
        { what: 'Content-Length', chunkedEncoding: false },
        { what: 'chunked', chunkedEncoding: true },
      ];
      for (const { what, chunkedEncoding } of cases) {
        const block = randomBlock(MAX_BLOCK);
        const before = await backend.snapshot();
        const putStarted = watch.nextPut();
        const socket = await partialUpload(backend, alice.token, block.hash, MAX_BLOCK, block.bytes.subarray(0, 20_000), chunkedEncoding);
        await within(putStarted, 10_000, `${what}: the server starting the put`);
        socket.destroy();
        const outcome = await within(watch.started.at(-1)!, 5_000, `${what}: the aborted put settling`);
        t.type(outcome, Error, `${what}: the put fails`);
        t.equal(await backend.snapshot(), before, `${what}: nothing stored, no temp file, no metadata`);
        t.same(await alice.client.checkBlocks([block.hash]), { missing: [block.hash] });
      }
      // And the server keeps serving on new connections.
      const ok = randomBlock(1000);
      t.same(await alice.client.putBlock(ok.hash, ok.bytes), { hash: ok.hash, size: 1000 });
    });

    t.test('a client that disconnects while its upload waits for authentication (busy database) leaves nothing', async (t) => {
      const watch = watchPuts(backend);
      t.teardown(watch.restore);
      for (const sent of [0, 1000]) {
        const what = `${sent} of ${MAX_BLOCK} body bytes sent`;
        const block = randomBlock(MAX_BLOCK);
        const before = await backend.snapshot();
        const putStarted = watch.nextPut();
        const releaseDb = await holdDatabase(backend);
        try {
          const arrived = serverSideRequest(`/v1/blocks/${block.hash}`);
          const socket = await partialUpload(backend, alice.token, block.hash, MAX_BLOCK, block.bytes.subarray(0, sent));
          // The request is in the server, stuck in authentication; the client goes away; then the database frees up.
          const { closed } = await within(arrived, 10_000, `${what}: the request reaching the server`);
          socket.destroy();
          await within(closed, 10_000, `${what}: the server seeing the disconnect`);
        } finally {
          await releaseDb();
        }
        await within(putStarted, 10_000, `${what}: the server starting the put`);
        const outcome = await within(watch.started.at(-1)!, 5_000, `${what}: the put of a request whose client is gone settling`);
        t.type(outcome, Error, `${what}: the put fails`);
        t.equal(await backend.snapshot(), before, `${what}: nothing stored, no temp file, no metadata`);
      }
    });

    t.test('invariant 4: a hash is not a capability', async (t) => {
      const secret = randomBlock(4000);
      const never = randomBlock(4000);
      await alice.client.putBlock(secret.hash, secret.bytes);
      t.equal(await backend.store.has(secret.hash), true, 'the store holds the block');

      // Bob learns nothing: the block alice holds looks exactly like a block nobody holds.
      t.same(await bob.client.checkBlocks([secret.hash, never.hash]), { missing: [secret.hash, never.hash] }, "check reports alice's block missing to bob");
      const getSecret = await backend.fetch(`/v1/blocks/${secret.hash}`, { token: bob.token });
      const getNever = await backend.fetch(`/v1/blocks/${never.hash}`, { token: bob.token });
      t.equal(getSecret.status, 404, "bob's GET of alice's block is 404");
      t.same([getSecret.status, await getSecret.text()], [getNever.status, await getNever.text()], 'the same answer as for a block never stored');
      const ranged = await backend.fetch(`/v1/blocks/${secret.hash}`, { token: bob.token, headers: { range: 'bytes=0-9' } });
      await expectError(t, ranged, 404, 'not_found');

      // Nor can bob make the block his by naming it in a commit.
      const root = await bob.client.root();
      const file = await bob.client.create({ parent_id: root.id, name: 'stolen.bin', kind: 'file' });
      await unchanged(t, backend, "bob's commit naming alice's block", async () => {
        const err = await bob.client.commit(file.id, { base_version: 0, blocks: [{ hash: secret.hash, size: 4000 }], size: 4000 }).catch((e: unknown) => e);
        t.type(err, ApiError);
        t.match(err, { status: 409, code: 'missing_blocks', extra: { missing: [secret.hash] } });
      });

      // Bob proves possession by uploading the same bytes: stored once, now readable by him.
      t.same(await bob.client.putBlock(secret.hash, secret.bytes), { hash: secret.hash, size: 4000 });
      t.equal(await copiesInStore(backend, secret.hash), 1, 'dedup: one copy in the store');
      t.equal((await backend.db('blocks').where({ hash: secret.hash })).length, 1, 'one blocks row');
      t.equal((await backend.db('block_owners').where({ hash: secret.hash })).length, 2, 'both users recorded as holders');
      t.same(await bob.client.checkBlocks([secret.hash]), { missing: [] });
      t.same(await bob.client.getBlock(secret.hash), secret.bytes);
      const v = await bob.client.commit(file.id, { base_version: 0, blocks: [{ hash: secret.hash, size: 4000 }], size: 4000 });
      t.equal(v.version, 1, 'and bob may now commit it');
    });

    t.test('invariant 4: a block is readable through a committed version that references it, and only by its readers', async (t) => {
      const block = randomBlock(2000);
      await alice.client.putBlock(block.hash, block.bytes);
      const root = await alice.client.root();
      const file = await alice.client.create({ parent_id: root.id, name: 'mine.bin', kind: 'file' });
      await alice.client.commit(file.id, { base_version: 0, blocks: [{ hash: block.hash, size: 2000 }], size: 2000 });
      t.same(await alice.client.getBlock(block.hash), block.bytes, 'alice reads the block of her version');

      // The version alone must grant the read: drop alice's upload record (as a cleanup of upload
      // records would), so that only the reference from her version remains.
      await backend.db('block_owners').where({ hash: block.hash, user_id: alice.id }).delete();
      t.same(await alice.client.getBlock(block.hash), block.bytes, 'still readable through the version');
      t.same(await alice.client.checkBlocks([block.hash]), { missing: [] }, 'and usable in a new commit');
      const v2 = await alice.client.commit(file.id, { base_version: 1, blocks: [{ hash: block.hash, size: 2000 }, { hash: block.hash, size: 2000 }], size: 4000 });
      t.equal(v2.version, 2);

      await expectError(t, await backend.fetch(`/v1/blocks/${block.hash}`, { token: bob.token }), 404, 'not_found');
      t.same(await bob.client.checkBlocks([block.hash]), { missing: [block.hash] }, "bob does not see alice's version's block");
    });
  });
}
