import net from 'node:net';
import t from 'tap';
import { errorCode, raw } from '../helpers/api-assert.js';
import { randomBlock, startTestBackend, stopOwnCluster, testEngines, within, type TestBackend } from '../helpers/backend.js';
import { eventually } from '../helpers/drive.js';
import { smallDisk } from '../helpers/tmpfs.js';

/*
 * Issue 9, findings 3 and 4: what a slow, greedy or unlucky client can do to the server. Slow
 * clients are cut off (headers, bodies, idle connections, a connection limit) without holding
 * anyone else up; a full disk is a 507 with Retry-After that stores nothing.
 */

t.teardown(stopOwnCluster);

const KiB = 1024;

/** A raw TCP connection to the server; `closed` resolves when the server (or anyone) ends it, with what it answered. */
function connect(backend: TestBackend): Promise<{ socket: net.Socket; closed: Promise<string> }> {
  const url = new URL(backend.url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(url.port), url.hostname, () => resolve({ socket, closed }));
    let answer = '';
    socket.setEncoding('latin1').on('data', (s: string) => (answer += s));
    socket.on('error', () => undefined); // a reset by the server ends in 'close', which tests observe
    const closed = new Promise<string>((done) => socket.once('close', () => done(answer)));
    socket.once('error', reject);
  });
}

for (const engine of testEngines()) {
  t.test(`slow clients [${engine}]`, async (t) => {
    const backend = await startTestBackend(engine, {
      http: { headers_timeout_ms: 1_000, request_timeout_ms: 4_000, idle_timeout_ms: 1_500, max_connections: 40 },
    });
    t.teardown(() => backend.close());
    const user = await backend.addUser('alice');

    t.test('a slowloris of 30 connections trickling headers neither holds the server nor is held by it', async (t) => {
      const conns = await Promise.all(Array.from({ length: 30 }, () => connect(backend)));
      // The attack: a request line, then one header line every 200 ms, forever.
      for (const { socket } of conns) socket.write(`GET /v1/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${user.token}\r\n`);
      const trickle = setInterval(() => {
        for (const { socket } of conns) if (!socket.destroyed) socket.write('X-Slow: 1\r\n');
      }, 200);
      t.teardown(() => clearInterval(trickle));
      const served = await within(raw(backend, 'GET', '/v1/whoami', { token: user.token }), 2_000, 'a normal request during the attack');
      t.equal(served.status, 200, 'a normal request is served at once during the attack');
      const answers = await within(Promise.all(conns.map((c) => c.closed)), 5_000, 'the server closing every slow connection');
      t.equal(answers.length, 30, 'the server closed every slow connection after the headers timeout');
      t.ok(answers.every((a) => a === '' || /^HTTP\/1\.1 408/.test(a)), 'with 408 or nothing, never a served request');
    });

    t.test('a body that stops coming is cut off and stores nothing; a slow but steady upload still lands', async (t) => {
      const before = await backend.snapshot();
      const block = randomBlock(64 * KiB);
      const { socket, closed } = await connect(backend);
      socket.write(`PUT /v1/blocks/${block.hash} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${user.token}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${block.bytes.length}\r\n\r\n`);
      socket.write(block.bytes.subarray(0, 1000));
      await within(closed, 5_000, 'the server closing a stalled upload');
      // The server removes the partial temp file once the aborted upload has unwound (just after the close).
      await eventually('the stalled upload leaving nothing behind', () => backend.snapshot(), (now) => now === before, 5_000);
      t.pass('nothing stored, no temp file left');

      // 64 KiB in 16 pieces over ~1.6 s, longer than the idle timeout: each piece moves the
      // connection, and the whole request fits the request timeout.
      const steady = await connect(backend);
      steady.socket.write(`PUT /v1/blocks/${block.hash} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${user.token}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${block.bytes.length}\r\nConnection: close\r\n\r\n`);
      let piece = 0;
      await new Promise<void>((resolve) => {
        const timer = setInterval(() => {
          steady.socket.write(block.bytes.subarray(piece * 4 * KiB, (piece + 1) * 4 * KiB));
          if (++piece === 16) {
            clearInterval(timer);
            resolve();
          }
        }, 100);
      });
      const answer = await within(steady.closed, 5_000, 'the steady upload answered');
      t.match(answer, /^HTTP\/1\.1 201/, 'the steady upload is stored (201)');
    });

    t.test('a request without a token does not keep its connection: a few kept-alive ones cannot hold the slots', async (t) => {
      const { socket, closed } = await connect(backend);
      socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
      const answer = await within(closed, 2_000, 'the server closing the unauthenticated connection');
      t.match(answer, /^HTTP\/1\.1 401/, 'answered 401…');
      t.match(answer, /\r\nConnection: close\r\n/i, '…and closed, keep-alive or not');
    });

    t.test('JSON bodies: small routes take at most max_json_bytes; deep nesting is refused before it is parsed', async (t) => {
      const before = await backend.snapshot();
      const json = { 'content-type': 'application/json' };
      const max = backend.settings.limits.max_json_bytes;
      const big = await raw(backend, 'POST', '/v1/blocks/check', { token: user.token, body: `{"hashes":["${'a'.repeat(max)}"]}`, headers: json });
      t.equal(big.status, 413, `a check body over ${max} bytes: 413`);
      t.match(big.json, { error: { code: 'too_large', max_json_bytes: max } });
      const deep = '['.repeat(500_000) + ']'.repeat(500_000);
      const nested = await within(raw(backend, 'POST', '/v1/blocks/check', { token: user.token, body: deep, headers: json }), 2_000, 'a deeply nested body refused');
      t.equal(nested.status, 400, '500,000 levels of [: 400 before JSON.parse sees them');
      t.match(nested.json, { error: { code: 'malformed_json', message: /nested deeper/ } });
      const inString = await raw(backend, 'POST', '/v1/nodes', { token: user.token, body: JSON.stringify({ parent_id: 'x', name: '['.repeat(200), kind: 'file' }), headers: json });
      t.equal(inString.status, 400, 'brackets inside a string are not nesting (refused for its bad parent id, not its depth)');
      t.notMatch(inString.text, /nested deeper/);
      t.equal(await backend.snapshot(), before, 'nothing changed');
    });

    t.test('connections past the limit are refused at once; idle ones are closed and the server serves again', async (t) => {
      const idle = await Promise.all(Array.from({ length: 40 }, () => connect(backend).catch(() => null)));
      const extra = await connect(backend).catch(() => null);
      if (extra) t.equal(await within(extra.closed, 2_000, 'the connection past the limit closing'), '', 'the connection past the limit is closed without an answer');
      else t.pass('the connection past the limit was refused');
      t.ok(idle.every((c) => c !== null && !c.socket.destroyed), 'at once: the 40 within the limit are still open');
      await within(Promise.all(idle.map((c) => c?.closed)), 5_000, 'idle connections closed by the server');
      t.equal((await raw(backend, 'GET', '/v1/whoami', { token: user.token })).status, 200, 'served again once they are gone');
    });
  });

  t.test(`a full disk [${engine}]`, async (t) => {
    const disk = await smallDisk(t, 1024 * KiB);
    const backend = await startTestBackend(engine, {}, { blocksDir: disk.dir });
    t.teardown(() => backend.close());
    const user = await backend.addUser('alice');
    const block = randomBlock(2048 * KiB);
    const before = await backend.snapshot();
    const res = await raw(backend, 'PUT', `/v1/blocks/${block.hash}`, { token: user.token, body: block.bytes, headers: { 'content-type': 'application/octet-stream' } });
    t.equal(res.status, 507, 'ENOSPC is 507 Insufficient Storage, not a bare 500');
    t.equal(errorCode(res), 'insufficient_storage');
    t.equal(res.headers.get('retry-after'), '60', 'with Retry-After');
    t.equal(await backend.snapshot(), before, 'nothing stored, no temp file left behind');
    await t.rejects(user.client.putBlock(block.hash, block.bytes), { status: 507, code: 'insufficient_storage' }, 'the client sees the code');
    await disk.resize(8192 * KiB);
    t.same(await user.client.putBlock(block.hash, block.bytes), { hash: block.hash, size: block.bytes.length }, 'once there is room the same upload is stored');
  });
}

for (const engine of testEngines()) {
  t.test(`per-user rate limits [${engine}]`, async (t) => {
    const backend = await startTestBackend(engine, { rate: { requests_per_s: 5, upload_bytes_per_s: 50 * KiB, download_bytes_per_s: 50 * KiB, window_s: 2 } });
    t.teardown(() => backend.close());

    t.test('requests past the limit are 429 with Retry-After and change nothing; other users are not affected', async (t) => {
      const alice = await backend.addUser('alice');
      const bob = await backend.addUser('bob');
      const root = await alice.client.root(); // request 1 of alice's 10 in this window
      const statuses: number[] = [];
      for (let i = 0; i < 12; i++) statuses.push((await raw(backend, 'GET', '/v1/whoami', { token: alice.token })).status);
      t.ok(statuses.includes(429), `past 10 requests per 2 s: ${statuses.join(' ')}`);
      const before = await backend.snapshot();
      const refused = await raw(backend, 'POST', '/v1/nodes', { token: alice.token, body: JSON.stringify({ parent_id: root.id, name: 'x', kind: 'file' }), headers: { 'content-type': 'application/json' } });
      t.equal(refused.status, 429, 'a refused create');
      t.equal(errorCode(refused), 'too_many_requests');
      const retry = Number(refused.headers.get('retry-after'));
      t.ok(retry >= 1 && retry <= 2, `Retry-After: ${retry} s (the rest of the window)`);
      t.equal(await backend.snapshot(), before, 'created nothing');
      t.equal((await raw(backend, 'GET', '/v1/whoami', { token: bob.token })).status, 200, "bob's requests go through");
    });

    t.test('upload and download bytes past the limit are refused before any byte is stored or sent', async (t) => {
      const carol = await backend.addUser('carol');
      const first = randomBlock(60 * KiB);
      const second = randomBlock(60 * KiB);
      await carol.client.putBlock(first.hash, first.bytes);
      const before = await backend.snapshot();
      const up = await raw(backend, 'PUT', `/v1/blocks/${second.hash}`, { token: carol.token, body: second.bytes, headers: { 'content-type': 'application/octet-stream' } });
      t.equal(up.status, 429, 'the second 60 KiB upload of a 100 KiB window is refused');
      t.ok(Number(up.headers.get('retry-after')) >= 1, 'with Retry-After');
      t.equal(await backend.snapshot(), before, 'nothing stored');
      const dave = await backend.addUser('dave');
      await dave.client.putBlock(second.hash, second.bytes);
      const file = await dave.client.create({ parent_id: (await dave.client.root()).id, name: 'f', kind: 'file' });
      await dave.client.commit(file.id, { base_version: 0, blocks: [{ hash: second.hash, size: second.bytes.length }], size: second.bytes.length });
      t.ok((await dave.client.getBlock(second.hash)).equals(second.bytes), 'a download within the limit');
      const down = await raw(backend, 'GET', `/v1/blocks/${second.hash}`, { token: dave.token });
      t.equal(down.status, 429, 'the second (120 KiB of a 100 KiB window) is refused');
      t.equal(errorCode(down), 'too_many_requests', 'with the error body, not block bytes');
    });
  });
}
