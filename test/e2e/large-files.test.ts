import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import t, { type Test } from 'tap';
import { GiB, KiB, MiB, prng, readAt, sha256File, writeRandomFile } from '../helpers/bigdata.js';
import { duBytes, eventually, mountDrive, remoteNode, sh, startServerProcess, tempDir } from '../helpers/drive.js';

/*
 * Large files on real FUSE mounts (`stratus mount` processes) of a real `stratus serve`: a 1 GiB
 * round trip between two mounts, lazy fetch of one 4 KiB range, a sparse file past 4 GiB, the hard
 * bound of the block cache while streaming a file three times its size, and an insert of one byte
 * that uploads only the blocks around it (content-defined chunking).
 *
 * Content is a pseudo-random stream (AES-CTR) so no block dedups against another. The mounts are
 * other processes: this one uses async fs and async child processes only, and never holds a
 * whole file in memory (streamed sha256).
 */

const MAX_BLOCK = 4 * MiB; // the server's default FastCDC max

const server = await startServerProcess(t);
const alice = await server.addUser('alice');
const local = await tempDir(t, 'large-src');

const big = { name: 'big.bin', size: 1 * GiB, file: path.join(local, 'big.bin'), sha: '' };

t.test('a 1 GiB file written on one mount reads back byte-identical on another', async (t) => {
  big.sha = await writeRandomFile(big.file, big.size, 'big');
  const a = await mountDrive(t, server, alice.token);
  let started = Date.now();
  await sh(`cp ${big.file} ${a.p(big.name)}`, local);
  t.comment(`cp of 1 GiB into the mount: ${Date.now() - started} ms`);
  t.equal((await fs.stat(a.p(big.name))).size, big.size, 'size on the writing mount');
  started = Date.now();
  t.equal(await a.stop(), 0, 'mount A stops cleanly (queue drained)');
  t.comment(`drain (chunk + upload 1 GiB): ${Date.now() - started} ms`);

  const node = await remoteNode(alice.client, big.name);
  t.equal(node?.size, big.size, 'the server has the whole file');
  t.equal(node?.head_version, 1, 'as one version');

  const b = await mountDrive(t, server, alice.token);
  t.equal((await fs.stat(b.p(big.name))).size, big.size, 'size on mount B');
  started = Date.now();
  const read = await sha256File(b.p(big.name));
  t.comment(`cold read of 1 GiB on mount B: ${Date.now() - started} ms`);
  t.equal(read.bytes, big.size, 'mount B reads every byte');
  t.equal(read.hash, big.sha, 'sha256 on mount B equals the source');
});

t.test('reading 4 KiB at 900 MiB on a fresh mount fetches only the blocks around it', async (t) => {
  const c = await mountDrive(t, server, alice.token);
  const blocks = path.join(c.cacheDir, 'blocks');
  t.equal(await duBytes(blocks), 0, 'the cache starts empty');
  const at = 900 * MiB;
  const got = await readAt(c.p(big.name), at, 4 * KiB);
  const want = await readAt(big.file, at, 4 * KiB);
  t.equal(got.length, 4 * KiB);
  t.ok(got.equals(want), 'the 4 KiB equal the source bytes');
  // The block's cache write runs beside the read (it may land just after the read returns).
  const cached = await eventually('the block in the cache', () => duBytes(blocks), (n) => n > 0, 10_000).catch(() => 0);
  t.comment(`cache after the 4 KiB read: ${cached} bytes`);
  t.ok(cached > 0, 'the block was fetched into the cache');
  t.ok(cached <= 2 * MAX_BLOCK + 256 * KiB, `at most two blocks were fetched (${cached} bytes)`);
});

t.test('a sparse 5 GiB file: markers past 4 GiB, holes read as zeros, exact size', async (t) => {
  const size = 5 * GiB;
  const name = 'sparse.bin';
  const next = prng('markers');
  const markers = [
    { at: 4.5 * GiB, bytes: next(4 * KiB) },
    { at: size - 1000, bytes: next(1000) }, // the last 1000 bytes of the file
  ];
  const holes = [0, 1 * GiB + 12345, 4 * GiB - 32 * KiB /* straddles the 4 GiB line */, 4.5 * GiB + 4 * KiB, size - 1000 - 64 * KiB];

  const check = async (t: Test, file: string) => {
    const st = await fs.stat(file);
    t.equal(st.size, size, 'stat size is exactly 5 GiB');
    t.equal((await sh(`stat -c %s ${name}`, path.dirname(file))).trim(), String(size), 'stat(1) agrees');
    for (const m of markers) t.ok((await readAt(file, m.at, m.bytes.length)).equals(m.bytes), `marker at ${m.at}`);
    for (const h of holes) {
      const bytes = await readAt(file, h, 64 * KiB);
      t.equal(bytes.length, 64 * KiB, `hole at ${h} is readable`);
      t.ok(bytes.equals(Buffer.alloc(64 * KiB)), `hole at ${h} reads as zeros`);
    }
    const tail = await readAt(file, size - 10, 100);
    t.equal(tail.length, 10, 'a read across the end stops at 5 GiB');
  };

  const s = await mountDrive(t, server, alice.token);
  const [m1, m2] = markers as [(typeof markers)[0], (typeof markers)[0]];
  const markerFiles = await Promise.all(
    markers.map(async (m, i) => {
      const f = path.join(local, `marker${i}`);
      await fs.writeFile(f, m.bytes);
      return f;
    }),
  );
  let started = Date.now();
  // The shell holds the file open meanwhile (fd 3), so what the tools write is committed once, at
  // the last close. Each tool's own open finds the content queued by the previous one's close:
  // the mount copies it into a new staging file, which must stay sparse.
  await sh(
    [
      `exec 3<>${name}`,
      `truncate -s 5G ${name}`,
      `dd if=${markerFiles[0]} of=${name} bs=4096 seek=${m1.at / 4096} conv=notrunc status=none`,
      `dd if=${markerFiles[1]} of=${name} bs=1000 seek=${m2.at} oflag=seek_bytes conv=notrunc status=none`,
      `du -sk ${s.cacheDir}/staging`,
      'exec 3>&-',
    ].join('; '),
    s.mountpoint,
  ).then((out) => {
    const stagingKiB = Number(out.trim().split(/\s+/)[0]);
    t.comment(`staging files on disk while open: ${stagingKiB} KiB`);
    t.ok(stagingKiB < 64 * 1024, 'staging files stay sparse (holes are not written out)');
  });
  t.comment(`truncate + 2 dd: ${Date.now() - started} ms`);
  await t.test('on the writing mount', (t) => check(t, s.p(name)));
  started = Date.now();
  t.equal(await s.stop(), 0, 'the mount stops cleanly (queue drained)');
  t.comment(`drain of the 5 GiB sparse file: ${Date.now() - started} ms`);

  const node = await remoteNode(alice.client, name);
  t.equal(node?.size, size, 'the server has a 5 GiB file');
  const fresh = await mountDrive(t, server, alice.token);
  await t.test('on a fresh mount', (t) => check(t, fresh.p(name)));
});

t.test('the block cache stays within --cache-size while a file 3x its size streams through', async (t) => {
  const limit = 64 * MiB;
  const name = 'stream.bin';
  const file = path.join(local, name);
  const sha = await writeRandomFile(file, 3 * limit, 'stream');
  const writer = await mountDrive(t, server, alice.token);
  await sh(`cp ${file} ${writer.p(name)}`, local);
  t.equal(await writer.stop(), 0, 'the writer drains and stops');
  await fs.rm(file);

  const d = await mountDrive(t, server, alice.token, { cacheSize: '64MB' });
  const blocks = path.join(d.cacheDir, 'blocks');
  let max = 0;
  let samples = 0;
  const sample = async () => {
    const n = await duBytes(blocks);
    samples++;
    if (n > max) max = n;
  };
  // One sampler runs alongside the reads (each sample starts when the last ended); the reader
  // samples once more after every chunk it got.
  let reading = true;
  const sampler = (async () => {
    while (reading) await sample();
  })();
  let read: { hash: string; bytes: number };
  try {
    const hash = createHash('sha256');
    let bytes = 0;
    const fh = await fs.open(d.p(name), 'r');
    try {
      const buf = Buffer.alloc(4 * MiB);
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, bytes);
        if (bytesRead === 0) break;
        hash.update(buf.subarray(0, bytesRead));
        bytes += bytesRead;
        await sample();
      }
    } finally {
      await fh.close();
    }
    read = { hash: hash.digest('hex'), bytes };
  } finally {
    reading = false;
    await sampler;
  }
  await sample();
  t.equal(read.bytes, 3 * limit, 'the whole file was read');
  t.equal(read.hash, sha, 'through a cache a third of its size, bytes are right');
  t.comment(`max cache bytes seen: ${max} in ${samples} samples (bound ${limit})`);
  t.ok(max > limit / 2, 'the cache was used');
  t.ok(max <= limit, `never more than 64 MiB on disk (max ${max})`);
  t.equal(await d.stop(), 0);
  t.ok((await duBytes(blocks)) <= limit, 'within the bound after stopping');
});

t.test('inserting one byte in the middle of a 256 MiB file uploads only the blocks around it', async (t) => {
  const size = 256 * MiB;
  const name = 'edit.bin';
  const original = path.join(local, 'edit-v1.bin');
  const edited = path.join(local, 'edit-v2.bin');
  await writeRandomFile(original, size, 'edit');
  // v2 = v1[0, 128 MiB) + one byte + v1[128 MiB, end)
  await sh(`{ head -c ${128 * MiB} ${original}; printf 'X'; tail -c +${128 * MiB + 1} ${original}; } > ${edited}`, local);
  t.equal((await fs.stat(edited)).size, size + 1);
  t.notOk((await readAt(edited, 0, 16)).equals(Buffer.alloc(16)), 'prepared the edited copy');

  const w1 = await mountDrive(t, server, alice.token);
  await sh(`cp ${original} ${w1.p(name)}`, local);
  t.equal(await w1.stop(), 0, 'v1 drained');
  const before = await server.blockBytes();
  t.equal((await remoteNode(alice.client, name))?.head_version, 1);

  const w2 = await mountDrive(t, server, alice.token);
  await sh(`cp ${edited} ${w2.p(name)}`, local);
  t.equal(await w2.stop(), 0, 'v2 drained');
  const after = await server.blockBytes();
  const delta = after - before;
  t.comment(`server block bytes: v1 ${before}, after the one-byte insert +${delta}`);
  const node = await remoteNode(alice.client, name);
  t.equal(node?.head_version, 2, 'the edit is version 2');
  t.equal(node?.size, size + 1);
  t.ok(delta > 0, 'something new was uploaded');
  t.ok(delta < 3 * MAX_BLOCK, `only the blocks around the edit were uploaded (${delta} bytes)`);

  const r = await mountDrive(t, server, alice.token);
  const [want, got] = await Promise.all([sha256File(edited), sha256File(r.p(name))]);
  t.equal(got.bytes, size + 1);
  t.equal(got.hash, want.hash, 'a fresh mount reads the edited file byte for byte');
  // Sanity: the byte is where it should be.
  t.ok((await readAt(r.p(name), 128 * MiB - 2, 5)).equals(await readAt(edited, 128 * MiB - 2, 5)));
});
