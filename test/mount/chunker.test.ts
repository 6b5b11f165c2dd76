import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { chunkLengths, DEFAULT_CHUNKING, FastCdcCutter, GEAR, KiB, MiB, type CdcEngine } from '../../mount/chunker/fastcdc.js';
import { ChunkerPool, type ChunkRef } from '../../mount/chunker/pool.js';
import { blake3Hex } from '../../protocol/hash.js';
import type { ChunkingParams } from '../../protocol/types.js';

/**
 * mount/chunker: the FastCDC cutter (pure, in-process) and the worker pool that chunks files and
 * hashes blocks off the main thread. Pool tests need the compiled worker (`npx tsc -p .`).
 */

const SMALL: ChunkingParams = { min: 1 * KiB, avg: 4 * KiB, max: 16 * KiB };
const ENGINES: CdcEngine[] = ['wasm', 'js'];

/** Deterministic pseudo-random bytes (AES-128-CTR keystream keyed by `seed`): fast and reproducible. */
function prbytes(n: number, seed: string): Buffer {
  const key = Buffer.alloc(16);
  key.write(seed);
  return crypto.createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(n));
}

function sum(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}

/** In-process reference: cut + BLAKE3 of each chunk. */
function referenceRefs(data: Buffer, params: ChunkingParams, start = 0): ChunkRef[] {
  const refs: ChunkRef[] = [];
  let off = 0;
  for (const size of chunkLengths(data, params)) {
    refs.push({ hash: blake3Hex(data.subarray(off, off + size)), size, offset: start + off });
    off += size;
  }
  return refs;
}

const tmpDir = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-chunker-'));
t.teardown(() => fs.rm(tmpDir, { recursive: true, force: true }));

/** Writes `size` random bytes to a temp file in 16 MiB pieces (never the whole file in memory). */
async function randomFile(name: string, size: number): Promise<string> {
  const file = path.join(tmpDir, name);
  const fh = await fs.open(file, 'w');
  try {
    for (let done = 0; done < size; ) {
      const n = Math.min(16 * MiB, size - done);
      await fh.write(crypto.randomBytes(n));
      done += n;
    }
  } finally {
    await fh.close();
  }
  return file;
}

t.test('the cutting contract is pinned: GEAR table and golden cut points', async (t) => {
  // Every client of a server must cut identically; these values change only if the algorithm does.
  t.equal(GEAR.length, 256, 'GEAR has 256 entries');
  t.equal(GEAR[0]! >>> 0, 3611104288, 'GEAR[0]');
  t.equal(GEAR[255]! >>> 0, 839542175, 'GEAR[255]');
  t.equal(blake3Hex(new Uint8Array(GEAR.buffer)), '69d307145fd1aa39387403744bdbde51a0d1256e2ecbe7b8d83aedb8a5e32c07', 'whole GEAR table');
  const small = prbytes(1 * MiB, 'golden-small');
  const big = prbytes(32 * MiB, 'golden-default');
  for (const engine of ENGINES) {
    const l = chunkLengths(small, SMALL, { engine });
    t.equal(l.length, 225, `${engine}: chunk count, 1 MiB at 1K/4K/16K`);
    t.same(l.slice(0, 12), [4587, 4057, 5481, 4148, 4098, 4162, 5336, 5718, 4359, 3957, 3195, 6026], `${engine}: first cuts`);
    t.equal(blake3Hex(Buffer.from(JSON.stringify(l))), '394041d895b733b43e09329cccd2bf43007eed8bf147ec554ec2a1f4dce6b5db', `${engine}: all cuts`);
    t.same(
      chunkLengths(big, DEFAULT_CHUNKING, { engine }),
      [
        1519473, 1754387, 1092282, 396702, 2053956, 1943208, 832904, 1443409, 1516208, 1450766, 1139610, 1150935, 1124498, 1179144, 1572577,
        1309677, 405612, 1468670, 1207376, 1121890, 1238131, 1386655, 1051144, 417287, 1647715, 1105453, 1024763,
      ],
      `${engine}: all cuts, 32 MiB at the 256K/1M/4M defaults`,
    );
  }
});

t.test('cut points are deterministic, respect min and max, and both engines agree', async (t) => {
  const data = crypto.randomBytes(16 * MiB);
  for (const params of [SMALL, DEFAULT_CHUNKING, { min: 4 * KiB, avg: 4 * KiB, max: 4 * KiB }, { min: 1000, avg: 3000, max: 5000 }]) {
    const label = `${params.min}/${params.avg}/${params.max}`;
    const a = chunkLengths(data, params, { engine: 'wasm' });
    const b = chunkLengths(data, params, { engine: 'js' });
    t.same(a, b, `${label}: wasm and js engines cut identically`);
    t.same(chunkLengths(data, params), a, `${label}: same input, same cuts`);
    t.equal(sum(a), data.length, `${label}: chunks cover the input exactly`);
    t.ok(
      a.slice(0, -1).every((n) => n >= params.min),
      `${label}: every chunk but the last is >= min`,
    );
    t.ok(
      a.every((n) => n <= params.max && n > 0),
      `${label}: every chunk is <= max`,
    );
  }
});

t.test('average chunk size is within a reasonable band of avg on random data', async (t) => {
  for (const [params, size] of [
    [SMALL, 32 * MiB],
    [DEFAULT_CHUNKING, 256 * MiB],
  ] as const) {
    const lengths = chunkLengths(crypto.randomBytes(size), params);
    const mean = size / lengths.length;
    t.ok(mean >= 0.75 * params.avg && mean <= 1.5 * params.avg, `avg ${params.avg}: mean chunk ${Math.round(mean)} within [0.75, 1.5] x avg (${lengths.length} chunks)`);
  }
});

t.test('streaming in arbitrary feed sizes gives the same cuts as one buffer', async (t) => {
  const data = crypto.randomBytes(6 * MiB);
  for (const engine of ENGINES) {
    for (const params of [SMALL, { min: 64 * KiB, avg: 256 * KiB, max: 1 * MiB }]) {
      const whole = chunkLengths(data, params, { engine });
      const feeds: Array<[string, () => number]> = [
        ['1-byte', () => 1],
        ['random 1..100K', () => 1 + crypto.randomInt(100 * KiB)],
        ['random 1..3M (crosses the wasm window)', () => 1 + crypto.randomInt(3 * MiB)],
        ['exactly min', () => params.min],
      ];
      for (const [name, next] of feeds) {
        // 1-byte feeds over the whole buffer would take long in the js engine: cover 512 KiB.
        const input = name === '1-byte' ? data.subarray(0, 512 * KiB) : data;
        const expected = name === '1-byte' ? chunkLengths(input, params, { engine }) : whole;
        const cutter = new FastCdcCutter(params, { engine });
        const ends: number[] = [];
        for (let off = 0; off < input.length; ) {
          const n = Math.min(next(), input.length - off);
          cutter.push(input.subarray(off, off + n), ends);
          off += n;
        }
        const last = cutter.finish();
        if (last !== null) ends.push(last);
        t.same(
          ends.map((e, i) => e - (i === 0 ? 0 : ends[i - 1]!)),
          expected,
          `${engine} ${params.avg}: ${name} feeds`,
        );
      }
    }
  }
});

t.test('inserting one byte in the middle changes only the chunks around the edit', async (t) => {
  for (const [params, size] of [
    [SMALL, 8 * MiB],
    [DEFAULT_CHUNKING, 64 * MiB],
  ] as const) {
    const data = crypto.randomBytes(size);
    const mid = size >> 1;
    const edited = Buffer.concat([data.subarray(0, mid), Buffer.from([0x42]), data.subarray(mid)]);
    const before = new Set(referenceRefs(data, params).map((r) => r.hash));
    const after = referenceRefs(edited, params);
    const changed = after.filter((r) => !before.has(r.hash)).length;
    t.ok(after.length > 20, `avg ${params.avg}: ${after.length} chunks`);
    t.ok(changed <= 3, `avg ${params.avg}: only ${changed} of ${after.length} chunks changed (<= 3)`);
  }
});

t.test('input smaller than min is one chunk; empty input has none', async (t) => {
  for (const engine of ENGINES) {
    t.same(chunkLengths(Buffer.alloc(0), SMALL, { engine }), [], `${engine}: empty`);
    t.same(chunkLengths(crypto.randomBytes(1000), SMALL, { engine }), [1000], `${engine}: 1000 < min`);
    t.same(chunkLengths(crypto.randomBytes(1), DEFAULT_CHUNKING, { engine }), [1], `${engine}: one byte`);
    t.same(chunkLengths(crypto.randomBytes(SMALL.min), SMALL, { engine }), [SMALL.min], `${engine}: exactly min`);
  }
  const cutter = new FastCdcCutter(SMALL);
  t.equal(cutter.finish(), null, 'finish on nothing is null');
  t.throws(() => cutter.push(Buffer.alloc(1)), 'push after finish throws');
});

t.test('invalid params are refused', async (t) => {
  t.throws(() => new FastCdcCutter({ min: 0, avg: 4096, max: 16384 }), RangeError);
  t.throws(() => new FastCdcCutter({ min: 8192, avg: 4096, max: 16384 }), RangeError);
  t.throws(() => new FastCdcCutter({ min: 1024, avg: 4096, max: 2048 }), RangeError);
  t.throws(() => new FastCdcCutter({ min: 1, avg: 2, max: 4 }), RangeError, 'avg too small for the masks');
  t.throws(() => new FastCdcCutter({ min: 1.5, avg: 4096, max: 16384 }), RangeError);
});

t.test('ChunkerPool', async (t) => {
  const pool = new ChunkerPool({ threads: 2 });
  t.teardown(() => pool.close());

  t.test('chunkFile of a 64 MiB file equals in-process cutting + BLAKE3 of the same bytes', async (t) => {
    const data = crypto.randomBytes(64 * MiB);
    const file = path.join(tmpDir, 'file64.bin');
    await fs.writeFile(file, data);
    t.same(await pool.chunkFile(file, DEFAULT_CHUNKING), referenceRefs(data, DEFAULT_CHUNKING), 'default params');
    const small = data.subarray(0, 8 * MiB + 12345);
    const smallFile = path.join(tmpDir, 'file8.bin');
    await fs.writeFile(smallFile, small);
    const refs = await pool.chunkFile(smallFile, SMALL);
    t.same(refs, referenceRefs(small, SMALL), 'small params (chunks span the 4 MiB read pieces)');
    const start = 1 * MiB + 7;
    t.same(await pool.chunkFile(smallFile, SMALL, { start }), referenceRefs(small.subarray(start), SMALL, start), 'from a start offset');
    await fs.rm(file);
  });

  t.test('files smaller than min and empty files', async (t) => {
    const tiny = path.join(tmpDir, 'tiny.bin');
    const bytes = crypto.randomBytes(100);
    await fs.writeFile(tiny, bytes);
    t.same(await pool.chunkFile(tiny, DEFAULT_CHUNKING), [{ hash: blake3Hex(bytes), size: 100, offset: 0 }]);
    const empty = path.join(tmpDir, 'empty.bin');
    await fs.writeFile(empty, '');
    t.same(await pool.chunkFile(empty, DEFAULT_CHUNKING), []);
  });

  t.test('hash returns the right hash and the bytes back', async (t) => {
    const original = crypto.randomBytes(4 * MiB);
    const whole = Buffer.from(original); // own ArrayBuffer: transferred both ways, no copy
    const r = await pool.hash(whole);
    t.equal(r.hash, blake3Hex(original));
    t.ok(r.bytes.equals(original), 'same bytes back');
    t.equal(whole.length, 0, 'the whole-ArrayBuffer input was transferred (detached)');

    const backing = crypto.randomBytes(64 * KiB);
    const slice = backing.subarray(100, 30_000); // a view: copied, the caller keeps it
    const r2 = await pool.hash(slice);
    t.equal(r2.hash, blake3Hex(backing.subarray(100, 30_000)));
    t.ok(r2.bytes.equals(slice), 'slice bytes back');
    t.equal(slice.length, 29_900, 'a slice is not detached');

    const small = Buffer.from('hello'); // from the shared Buffer pool: must not detach the pool
    const r3 = await pool.hash(small);
    t.equal(r3.hash, blake3Hex(Buffer.from('hello')));
    t.equal(small.toString(), 'hello');
    t.equal((await pool.hash(Buffer.alloc(0))).hash, blake3Hex(Buffer.alloc(0)), 'empty input');
  });

  t.test('hashFile reads and hashes a file in the worker; a file of another size is not read', async (t) => {
    const bytes = crypto.randomBytes(MiB + 3);
    const file = path.join(tmpDir, 'hash-file.bin');
    await fs.writeFile(file, bytes);
    const r = await pool.hashFile(file, bytes.length);
    t.same({ size: r.size, hash: r.hash }, { size: bytes.length, hash: blake3Hex(bytes) });
    t.ok(r.bytes.equals(bytes), 'its bytes come back');
    t.same({ ...(await pool.hashFile(file, bytes.length + 1)), bytes: undefined }, { size: bytes.length, hash: '', bytes: undefined }, 'larger than asked: not read, its size told');
    t.equal((await pool.hashFile(file, 10)).bytes.length, 0, 'smaller than asked: no bytes');
    await fs.writeFile(file, '');
    t.equal((await pool.hashFile(file, 0)).hash, blake3Hex(Buffer.alloc(0)), 'an empty file');
    await t.rejects(pool.hashFile(path.join(tmpDir, 'missing.bin'), 1), { code: 'ENOENT', syscall: 'open' }, 'a missing file rejects like fs');
  });

  t.test('hashedBytes counts what chunkFile and hashFile read, not hash nor a file of another size', async (t) => {
    const own = new ChunkerPool({ threads: 1 });
    t.teardown(() => own.close());
    const file = path.join(tmpDir, 'counted.bin');
    await fs.writeFile(file, crypto.randomBytes(3 * MiB + 5));
    await own.chunkFile(file, SMALL);
    await own.chunkFile(file, SMALL, { start: MiB });
    await own.hashFile(file, 3 * MiB + 5);
    await own.hashFile(file, 1); // another size: not read
    await own.hash(crypto.randomBytes(1000));
    t.equal(own.hashedBytes, 3 * (3 * MiB + 5) - MiB);
  });

  t.test('errors reject the promise', async (t) => {
    await t.rejects(pool.chunkFile(path.join(tmpDir, 'missing.bin'), DEFAULT_CHUNKING), { code: 'ENOENT' }, 'missing file');
    await t.rejects(pool.chunkFile(path.join(tmpDir), DEFAULT_CHUNKING), { code: 'EISDIR' }, 'a directory');
    await t.rejects(pool.chunkFile(path.join(tmpDir, 'x'), { min: 10, avg: 5, max: 20 }), RangeError, 'bad params');
  });

  t.test('a crashed worker is replaced', async (t) => {
    const bytes = Buffer.from('after the crash');
    t.equal((await pool.hash(Buffer.from(bytes))).hash, blake3Hex(bytes));
    const before = pool.size;
    pool.crashOneWorkerForTest();
    while (pool.size === before) await new Promise((r) => setTimeout(r, 5));
    t.equal((await pool.hash(Buffer.from(bytes))).hash, blake3Hex(bytes), 'hash still works');
    const file = path.join(tmpDir, 'after-crash.bin');
    await fs.writeFile(file, bytes);
    t.same(await pool.chunkFile(file, SMALL), [{ hash: blake3Hex(bytes), size: bytes.length, offset: 0 }], 'chunkFile still works');
  });

  t.test('close rejects new work', async (t) => {
    const p = new ChunkerPool({ threads: 1 });
    t.equal((await p.hash(Buffer.from('x'))).hash, blake3Hex(Buffer.from('x')));
    await p.close();
    await t.rejects(p.hash(Buffer.from('x')), /closed/);
  });
});

t.test('chunking a 256 MiB file blocks neither the main thread nor hash requests, in flat memory', async (t) => {
  const file = await randomFile('big256.bin', 256 * MiB);
  const pool = new ChunkerPool({ threads: 1 }); // one worker: the hash below must share it with chunkFile
  t.teardown(() => pool.close());
  await pool.hash(Buffer.from('warm up')); // worker started

  const rssBefore = process.memoryUsage().rss;
  let rssPeak = rssBefore;
  let last = performance.now();
  let maxGap = 0;
  let ticks = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    ticks++;
    rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
  }, 5);

  const started = performance.now();
  let chunkDone = 0;
  const chunking = pool.chunkFile(file, DEFAULT_CHUNKING).then((refs) => {
    chunkDone = performance.now();
    return refs;
  });
  await new Promise((r) => setTimeout(r, 30));
  const block = crypto.randomBytes(1 * MiB);
  const expected = blake3Hex(block);
  const askedAt = performance.now();
  const hashed = await pool.hash(block);
  const hashLatency = performance.now() - askedAt;
  const hashDone = performance.now();
  const refs = await chunking;
  clearInterval(timer);
  const elapsed = chunkDone - started;

  t.equal(sum(refs.map((r) => r.size)), 256 * MiB, `chunked 256 MiB into ${refs.length} blocks in ${elapsed.toFixed(0)} ms`);
  t.ok(ticks > elapsed / 50, `${ticks} timer ticks fired during chunking`);
  t.ok(maxGap < 200, `max gap between 5 ms ticks was ${maxGap.toFixed(1)} ms (< 200)`);
  t.equal(hashed.hash, expected);
  t.ok(hashDone < chunkDone, 'the hash was answered while the same worker was still chunking');
  t.ok(hashLatency < 150, `hash latency during chunking: ${hashLatency.toFixed(1)} ms (< 150)`);
  t.ok(rssPeak - rssBefore < 128 * MiB, `process RSS grew by ${((rssPeak - rssBefore) / MiB).toFixed(1)} MiB while chunking 256 MiB (< 128)`);
});
