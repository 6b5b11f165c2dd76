import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import { Bucket, File, Storage } from '@google-cloud/storage';
import t from 'tap';
import { DiskBlockStore } from '../../backend/blockstore/disk.js';
import { GcsBlockStore, parseGcsUrl } from '../../backend/blockstore/gcs.js';
import { openBlockStore } from '../../backend/blockstore/open.js';
import { FIREBASE_TOOLS_VERSION, loadFirebaseInternals } from '../../scripts/gcs-emulator.js';
import { randomBlock } from '../helpers/backend.js';
import { startGcsEmulator } from '../helpers/gcs.js';
import { readAll } from '../helpers/blockstore.js';

/**
 * What is particular to the Google Cloud Storage block store (the shared cases are in
 * blockstore-contract.test.ts), against the emulator of test/helpers/gcs.ts; and what that
 * emulator does not check, covered here another way:
 * - signatures: the emulator serves a signed URL whatever its signature, so the V4 signature is
 *   verified here against the service account's public key, following Google's V4 spec;
 * - multi-chunk resumable uploads (silently truncated by the emulator): the store never makes one,
 *   checked on the options it passes to the client;
 * - preconditions (ignored by the emulator): the store relies on none (the contract suite's
 *   concurrent puts hold without them).
 */

const require = createRequire(import.meta.url);

/** RFC 3986 encoding, as V4 signing wants it. */
function enc(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** Checks a V4 signed URL (GOOG4-RSA-SHA256, GET, host the only signed header) against a public key, as GCS does. */
function verifyV4SignedUrl(signed: string, publicKeyPem: string): { valid: boolean; params: Record<string, string> } {
  const u = new URL(signed);
  const params = Object.fromEntries(u.searchParams);
  const signature = params['X-Goog-Signature'] ?? '';
  const query = [...u.searchParams]
    .filter(([k]) => k !== 'X-Goog-Signature')
    .map(([k, v]) => [enc(k), enc(v)] as const)
    .sort((a, b) => (a[0] < b[0] ? -1 : 1))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  // The client signs the host name (GCS itself is on the default port).
  const canonicalRequest = ['GET', u.pathname, query, `host:${u.hostname}\n`, 'host', 'UNSIGNED-PAYLOAD'].join('\n');
  const scope = (params['X-Goog-Credential'] ?? '').split('/').slice(1).join('/');
  const stringToSign = ['GOOG4-RSA-SHA256', params['X-Goog-Date'], scope, crypto.createHash('sha256').update(canonicalRequest).digest('hex')].join('\n');
  const valid = /^[0-9a-f]+$/.test(signature) && crypto.verify('sha256', Buffer.from(stringToSign), publicKeyPem, Buffer.from(signature, 'hex'));
  return { valid, params };
}

t.test('smoke: the emulator is the pinned firebase-tools and the internals the helper relies on are where they were', async (t) => {
  const pkg = JSON.parse(await fs.readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { devDependencies: Record<string, string> };
  t.equal(pkg.devDependencies['firebase-tools'], FIREBASE_TOOLS_VERSION, 'package.json pins the version scripts/gcs-emulator.ts was written for');
  t.equal((require('firebase-tools/package.json') as { version: string }).version, FIREBASE_TOOLS_VERSION, 'and that version is installed');
  const internals = loadFirebaseInternals(); // throws, naming what moved
  t.equal(internals.version, FIREBASE_TOOLS_VERSION);
  const src = await fs.readFile(require.resolve('firebase-tools/lib/emulator/storage/index.js'), 'utf8');
  t.match(src, /getPersistenceTmpDir\(\) \{\s*return `\$\{\(0, os_1\.tmpdir\)\(\)\}\/firebase\/storage\/blobs`;/, 'blobs still go under $TMPDIR (the script gives it its own)');
  t.match(src, /this\._rulesRuntime\.start\(/, 'start() still starts the rules runtime (the script makes it a no-op)');
  // And it serves: the emulator starts and answers the JSON API (the contract suite does the rest).
  const emu = await startGcsEmulator(t);
  const res = await fetch(`${emu.host}/storage/v1/b/${emu.bucket}/o`);
  t.equal(res.status, 200);
  t.same(await res.json(), { kind: 'storage#objects' });
});

t.test('gs:// URLs', async (t) => {
  t.same(parseGcsUrl('gs://my-bucket'), { bucket: 'my-bucket', prefix: '' });
  t.same(parseGcsUrl('gs://my-bucket/'), { bucket: 'my-bucket', prefix: '' });
  t.same(parseGcsUrl('gs://my-bucket/a/b/'), { bucket: 'my-bucket', prefix: 'a/b/' });
  t.same(parseGcsUrl('gs://my.bucket_1/stratus'), { bucket: 'my.bucket_1', prefix: 'stratus/' });
  for (const bad of ['gs://', 'gs://UPPER', 's3://x/y', 'gs:///x']) t.throws(() => parseGcsUrl(bad), `${bad} refused`);
});

t.test('the GCS store', async (t) => {
  const emu = await startGcsEmulator(t);
  const bucket = new Storage().bucket(emu.bucket);

  t.test('--blocks gs://BUCKET/prefix opens it, objects under PREFIX/blocks/<hash>', async (t) => {
    const store = await openBlockStore(emu.blocksUrl('team/stratus'), '/nonexistent');
    t.teardown(() => store.close());
    t.type(store, GcsBlockStore);
    const a = randomBlock(1000);
    await store.put(a.hash, Readable.from([a.bytes]));
    const [files] = await bucket.getFiles({ prefix: 'team/' });
    t.same(
      files.map((f) => f.name),
      [`team/stratus/blocks/${a.hash}`],
    );
    const [meta] = await bucket.file(`team/stratus/blocks/${a.hash}`).getMetadata();
    t.equal(Number(meta.size), 1000);
  });

  t.test('stores under different prefixes of one bucket do not see each other', async (t) => {
    const one = await GcsBlockStore.open(emu.blocksUrl('one'));
    const two = await GcsBlockStore.open(emu.blocksUrl('one-two'));
    const a = randomBlock(10);
    await one.put(a.hash, Readable.from([a.bytes]));
    t.equal(await two.has(a.hash), false);
    const listed: string[] = [];
    for await (const h of two.list()) listed.push(h);
    t.same(listed, []);
  });

  t.test('list pages through the bucket', async (t) => {
    const store = await GcsBlockStore.open(emu.blocksUrl(), { listPageSize: 2 });
    const blocks = Array.from({ length: 7 }, () => randomBlock(10));
    for (const b of blocks) await store.put(b.hash, Readable.from([b.bytes]));
    // Not blocks: ignored by list.
    await bucket.file(`${store.location.prefix}blocks/README`).save('x', { resumable: false });
    let requests = 0;
    const real = Bucket.prototype.getFiles;
    Bucket.prototype.getFiles = function (this: Bucket, ...args: unknown[]) {
      requests++;
      return (real as (...a: unknown[]) => unknown).apply(this, args);
    } as typeof real;
    t.teardown(() => {
      Bucket.prototype.getFiles = real;
    });
    const listed: string[] = [];
    for await (const h of store.list()) listed.push(h);
    t.same(listed.sort(), blocks.map((b) => b.hash).sort());
    t.equal(requests, 4, '8 objects, 2 a page: 4 requests');
  });

  t.test('puts are single-request uploads (the emulator truncates multi-chunk resumable ones silently)', async (t) => {
    const store = await GcsBlockStore.open(emu.blocksUrl());
    const seen: unknown[] = [];
    const real = File.prototype.createWriteStream;
    File.prototype.createWriteStream = function (this: File, opts) {
      seen.push(opts);
      return real.call(this, opts);
    };
    t.teardown(() => {
      File.prototype.createWriteStream = real;
    });
    const a = randomBlock(4 * 1024 * 1024);
    await store.put(a.hash, Readable.from([a.bytes]));
    t.match(seen, [{ resumable: false, validation: 'crc32c' }]);
  });

  t.test('temp objects older than the cutoff (a put that died with its process) are removed when a store opens; younger ones are left', async (t) => {
    const url = emu.blocksUrl();
    const first = await GcsBlockStore.open(url);
    const a = randomBlock(10);
    await first.put(a.hash, Readable.from([a.bytes]));
    await bucket.file(`${first.tempPrefix}${a.hash}.0123456789ab`).save(Buffer.alloc(100), { resumable: false });
    await GcsBlockStore.open(url); // default cutoff: an hour; the leftover is younger
    t.equal((await bucket.getFiles({ prefix: first.tempPrefix }))[0].length, 1, 'a young temp object is kept (another instance may be writing it)');
    await new Promise((r) => setTimeout(r, 20));
    await GcsBlockStore.open(url, { staleTempMs: 10 });
    t.same((await bucket.getFiles({ prefix: first.tempPrefix }))[0], [], 'an old one is removed');
    t.equal(await first.has(a.hash), true, 'blocks are not touched');
  });

  t.test('signedUrl: a V4 URL that reads the block (whole or a range) without credentials, signed by the service account', async (t) => {
    const store = await GcsBlockStore.open(emu.blocksUrl());
    const a = randomBlock(100_000);
    await store.put(a.hash, Readable.from([a.bytes]));
    const url = await store.signedUrl(a.hash, 60_000);
    t.ok(url.startsWith(`${emu.host}/${emu.bucket}/`), 'served by the emulator');

    const whole = await fetch(url);
    t.equal(whole.status, 200);
    t.ok(Buffer.from(await whole.arrayBuffer()).equals(a.bytes), 'the block');
    const part = await fetch(url, { headers: { Range: 'bytes=100-199' } });
    t.equal(part.status, 206);
    t.ok(Buffer.from(await part.arrayBuffer()).equals(a.bytes.subarray(100, 200)), 'a range');

    // What the emulator does not check: the signature, verified here against the public key.
    const { valid, params } = verifyV4SignedUrl(url, emu.publicKeyPem);
    t.ok(valid, 'signed by the service account key, over GET of exactly this object');
    t.equal(params['X-Goog-Algorithm'], 'GOOG4-RSA-SHA256');
    t.equal(params['X-Goog-Expires'], '60', 'lives for the TTL asked for');
    t.match(params['X-Goog-Credential'], new RegExp(`^${emu.clientEmail.replace(/[.]/g, '\\.')}/\\d{8}/auto/storage/goog4_request$`));
    t.equal(decodeURIComponent(new URL(url).pathname), `/${emu.bucket}/${store.location.prefix}blocks/${a.hash}`, 'names this block');

    const other = randomBlock(10);
    const forOther = new URL(url);
    forOther.pathname = forOther.pathname.replace(a.hash, other.hash);
    t.notOk(verifyV4SignedUrl(forOther.toString(), emu.publicKeyPem).valid, 'the same signature does not cover another block');
    const longer = new URL(url);
    longer.searchParams.set('X-Goog-Expires', '604800');
    t.notOk(verifyV4SignedUrl(longer.toString(), emu.publicKeyPem).valid, 'nor a longer lifetime');
    const { publicKey: foreignKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    t.notOk(verifyV4SignedUrl(url, foreignKey.export({ type: 'spki', format: 'pem' }).toString()).valid, 'nor verifies with another key');

    await t.rejects(store.signedUrl(a.hash, 8 * 24 * 3600 * 1000), /7 days/, 'more than 7 days is refused');
    await t.rejects(store.signedUrl('nope', 1000), /not a block id/);
  });
});

t.test('a bucket that cannot be reached fails the open, naming the URL', async (t) => {
  const saved = process.env.STORAGE_EMULATOR_HOST;
  process.env.STORAGE_EMULATOR_HOST = 'http://127.0.0.1:9'; // nothing listens there
  t.teardown(() => {
    if (saved === undefined) delete process.env.STORAGE_EMULATOR_HOST;
    else process.env.STORAGE_EMULATOR_HOST = saved;
  });
  await t.rejects(GcsBlockStore.open('gs://nowhere/x', { storage: { retryOptions: { autoRetry: false } } }), /cannot use gs:\/\/nowhere\/x as the block store/);
});

t.test('the disk store has no signed URLs', async (t) => {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-blockstore-'));
  t.teardown(() => fs.rm(root, { recursive: true, force: true }));
  const store = await DiskBlockStore.open(root);
  t.equal(await store.signedUrl(), undefined);
});
