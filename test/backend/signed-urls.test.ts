import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import t from 'tap';
import { blockHash, startTestBackend } from '../helpers/backend.js';
import { startGcsEmulator } from '../helpers/gcs.js';
import { drained, readAll, SMALL_CHUNKING, tempCacheDir, assembleVfs, writeAll } from '../helpers/vfs.js';

/**
 * Downloads by signed URL (DESIGN §5, §8; issue 13): with blocks on Google Cloud Storage (the
 * emulator), GET /v1/blocks/:hash answers with a short-lived signed URL (307) and the bytes come
 * from the store, not through the backend; the client and the drive follow it. A URL that fails
 * or names another block gets the client a fresh one, then the bytes through the server — never an
 * error; `?direct=1` asks for the bytes through the server.
 */

const gcs = await startGcsEmulator(t);
const backend = await startTestBackend('sqlite', { chunking: SMALL_CHUNKING }, { blocksDir: gcs.blocksUrl() });
t.teardown(() => backend.close());

/** A user's GET of a block, redirects not followed. */
function getRaw(server: { url: string }, token: string, hash: string, query = ''): Promise<Response> {
  return fetch(`${server.url}/v1/blocks/${hash}${query}`, { headers: { authorization: `Bearer ${token}` }, redirect: 'manual' });
}

/** Random bytes uploaded as a block by `u`. */
async function uploaded(u: { client: { putBlock(hash: string, bytes: Buffer): Promise<unknown> } }, size: number): Promise<{ bytes: Buffer; hash: string }> {
  const bytes = crypto.randomBytes(size);
  const hash = blockHash(bytes);
  await u.client.putBlock(hash, bytes);
  return { bytes, hash };
}

t.test('GET /v1/blocks answers a signed URL of the store; the client reads the block from there; direct=1 sends the bytes', async (t) => {
  const u = await backend.addUser('signed');
  const { bytes, hash } = await uploaded(u, 70_000);
  const res = await getRaw(backend, u.token, hash);
  t.equal(res.status, 307, 'a redirect');
  const location = res.headers.get('location')!;
  t.ok(location.startsWith(gcs.host), `to the store (${location.slice(0, 40)}…)`);
  t.match(location, /X-Goog-Signature=/, 'signed');
  t.ok(Buffer.from(await (await fetch(location)).arrayBuffer()).equals(bytes), 'the URL reads the block');
  t.ok((await u.client.getBlock(hash)).equals(bytes), 'the client follows it');
  t.ok((await u.client.getBlock(hash, { offset: 1000, length: 500 })).equals(bytes.subarray(1000, 1500)), 'ranges too');
  const direct = await getRaw(backend, u.token, hash, '?direct=1');
  t.equal(direct.status, 200, 'direct=1: the bytes through the server');
  t.ok(Buffer.from(await direct.arrayBuffer()).equals(bytes));
  const stranger = await backend.addUser('signed-stranger');
  const refused = await getRaw(backend, stranger.token, hash);
  t.equal(refused.status, 404, 'no URL for a block the caller may not read (invariant 4)');
});

t.test('with signed URLs off (serve --no-signed-urls), GET /v1/blocks sends the bytes through the server', async (t) => {
  const direct = await startTestBackend('sqlite', { downloads: { signed_urls: false } }, { blocksDir: gcs.blocksUrl() });
  t.teardown(() => direct.close());
  const u = await direct.addUser('no-signed');
  const { bytes, hash } = await uploaded(u, 20_000);
  const res = await getRaw(direct, u.token, hash);
  t.equal(res.status, 200, 'no redirect');
  t.ok(Buffer.from(await res.arrayBuffer()).equals(bytes), 'the bytes, from the GCS store through the server');
});

t.test('a URL that fails or names another block gets the client a fresh one, then the bytes through the server', async (t) => {
  const u = await backend.addUser('signed-bad');
  const bytes = crypto.randomBytes(5000);
  const hash = blockHash(bytes);
  const other = crypto.randomBytes(4000);
  await u.client.putBlock(hash, bytes);
  await u.client.putBlock(blockHash(other), other);
  const store = backend.store as typeof backend.store & { signedUrl(hash: string, ttl: number): Promise<string | undefined> };
  const sign = store.signedUrl.bind(store);
  t.teardown(() => void (store.signedUrl = sign));
  let asked = 0;
  // A foreign URL (another block's), then one of a block that is not there (as an expired URL fails).
  store.signedUrl = async (h, ttl) => (++asked === 1 ? sign(blockHash(other), ttl) : sign('0'.repeat(64), ttl));
  t.ok((await u.client.getBlock(hash)).equals(bytes), 'the right bytes in the end');
  t.equal(asked, 2, 'two URLs were tried before the direct path');
  store.signedUrl = sign;
  t.ok((await u.client.getBlock(hash)).equals(bytes), 'and a good URL works again');
});

t.test('a drive reads files through signed URLs', async (t) => {
  const u = await backend.addUser('signed-drive');
  const cacheDir = await tempCacheDir(t);
  const h = await assembleVfs({ url: backend.url, token: u.token, cacheDir });
  t.teardown(() => h.close());
  const data = crypto.randomBytes(900_000);
  await writeAll(h.vfs, '/f.bin', data, { create: true });
  await drained(h.queue);
  const reader = await assembleVfs({ url: backend.url, token: u.token, cacheDir: await tempCacheDir(t) });
  t.teardown(() => reader.close());
  await reader.vfs.readdir('/');
  t.ok((await readAll(reader.vfs, '/f.bin')).equals(data), 'a second mount reads the whole file, block by block from the store');
  await fs.access(cacheDir);
});
