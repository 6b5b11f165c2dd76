import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { BlockCache, CacheFullError } from '../../cache/block-cache.js';
import { blake3Hex } from '../../protocol/hash.js';
import { cachedBlockFile as blockFile, damageFile } from '../helpers/corrupt.js';

/** Unit tests of the mount's LRU disk block cache (DESIGN §7), on a temp folder. */

interface Block {
  bytes: Buffer;
  hash: string;
}

function block(size: number): Block {
  const bytes = crypto.randomBytes(size);
  return { bytes, hash: blake3Hex(bytes) };
}

/** A temp folder, and an opener whose caches are closed (before the folder is removed) at teardown. */
async function setup(t: Test): Promise<{ dir: string; open: (maxBytes: number) => Promise<BlockCache> }> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'stratus-block-cache-'));
  const caches: BlockCache[] = [];
  t.teardown(async () => {
    for (const cache of caches) await cache.close();
    await fsp.rm(dir, { recursive: true, force: true });
  });
  return {
    dir,
    open: async (maxBytes) => {
      const cache = await BlockCache.open({ dir, maxBytes });
      caches.push(cache);
      return cache;
    },
  };
}

/** Every regular file under `dir` (temp files included) with its size. */
async function filesUnder(dir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const entries = await fsp.readdir(dir, { recursive: true, withFileTypes: true });
  for (const e of entries) {
    if (!e.isFile()) continue;
    const file = path.join(e.parentPath, e.name);
    out.set(path.relative(dir, file), (await fsp.stat(file)).size);
  }
  return out;
}

async function bytesOnDisk(dir: string): Promise<number> {
  let total = 0;
  for (const size of (await filesUnder(dir)).values()) total += size;
  return total;
}

t.test('put, has, readSync (with offsets) and get return the stored bytes; absent blocks miss', async (t) => {
  const { dir, open } = await setup(t);
  const cache = await open(1 << 20);
  const a = block(10_000);
  const empty = block(0);
  const absent = block(10);

  t.equal(cache.has(a.hash), false, 'absent before put');
  await cache.put(a.hash, a.bytes);
  await cache.put(empty.hash, empty.bytes);
  t.equal(cache.has(a.hash), true);
  t.ok(fs.existsSync(blockFile(dir, a.hash)), 'stored under blocks/ab/cd/<hash>');

  const target = Buffer.alloc(100);
  t.equal(cache.readSync(a.hash, target, 10, 50, 1234), 50, 'reads the requested length');
  t.same(target.subarray(10, 60), a.bytes.subarray(1234, 1284), 'bytes from blockOffset land at targetOffset');
  t.same(target.subarray(0, 10), Buffer.alloc(10), 'nothing written before targetOffset');
  t.same(target.subarray(60), Buffer.alloc(40), 'nothing written after targetOffset + length');

  t.equal(cache.readSync(a.hash, target, 0, 100, 9_950), 50, 'a read past the end is cut at the end of the block');
  t.same(target.subarray(0, 50), a.bytes.subarray(9_950));
  t.equal(cache.readSync(a.hash, target, 0, 100, 10_000), 0, 'a read at the end reads nothing');
  t.equal(cache.readSync(empty.hash, target, 0, 100, 0), 0, 'an empty block is cached and reads nothing');
  t.equal(cache.readSync(absent.hash, target, 0, 10, 0), -1, 'an absent block reads -1');
  t.throws(() => cache.readSync(a.hash, target, 90, 20, 0), RangeError, 'a read overrunning the target is refused');

  t.same(await cache.get(a.hash), a.bytes, 'get returns the whole block');
  t.same(await cache.get(empty.hash), Buffer.alloc(0));
  t.equal(await cache.get(absent.hash), undefined, 'get of an absent block is undefined');

  const stats = cache.stats();
  t.match(stats, { blocks: 2, bytes: 10_000, reservedBytes: 0, maxBytes: 1 << 20, evictions: 0 });
  t.equal(stats.hits, 6, 'hits: 4 readSync + 2 get');
  t.equal(stats.misses, 2, 'misses: 1 readSync + 1 get');
});

t.test('LRU order: a block read recently (readSync or get) survives eviction; the least recent goes', async (t) => {
  const { dir, open } = await setup(t);
  const cache = await open(3_000);
  const [a, b, c, d, e] = [block(1_000), block(1_000), block(1_000), block(1_000), block(1_000)] as const;
  for (const x of [a, b, c]) await cache.put(x.hash, x.bytes);

  t.equal(cache.readSync(a.hash, Buffer.alloc(10), 0, 10, 0), 10, 'read A: order is now B, C, A');
  await cache.put(d.hash, d.bytes);
  t.equal(cache.has(b.hash), false, 'B, the least recently used, was evicted');
  t.equal(cache.readSync(b.hash, Buffer.alloc(10), 0, 10, 0), -1, 'an evicted block is not readable');
  t.equal(await cache.get(b.hash), undefined);
  t.notOk(fs.existsSync(blockFile(dir, b.hash)), 'its file is deleted by the time the put that evicted it resolves');
  for (const x of [a, c, d]) t.ok(cache.has(x.hash));

  await cache.get(c.hash); // order: A, D, C
  await cache.put(e.hash, e.bytes);
  t.equal(cache.has(a.hash), false, 'A was least recent after get(C)');
  for (const x of [c, d, e]) t.ok(cache.has(x.hash));
  t.match(cache.stats(), { blocks: 3, bytes: 3_000, evictions: 2 });
});

t.test('the bound is hard: bytes on disk never exceed maxBytes across puts of 3x the bound, concurrent, with a reservation', async (t) => {
  const { dir, open } = await setup(t);
  const maxBytes = 256 * 1024;
  const reserved = 64 * 1024;
  const cache = await open(maxBytes);
  await cache.reserve(reserved);

  let total = 0;
  let batches = 0;
  let peak = 0;
  while (total < 3 * maxBytes) {
    // 16 puts at once of up to 32 KiB: more than the free space, so later ones wait for room.
    const blocks = Array.from({ length: 16 }, () => block(1 + crypto.randomInt(32 * 1024)));
    await Promise.all(blocks.map((x) => cache.put(x.hash, x.bytes)));
    total += blocks.reduce((sum, x) => sum + x.bytes.length, 0);
    batches++;
    const onDisk = await bytesOnDisk(dir);
    peak = Math.max(peak, onDisk);
    if (onDisk + reserved > maxBytes || onDisk !== cache.stats().bytes) {
      t.fail(`after batch ${batches}: ${onDisk} bytes on disk, stats say ${cache.stats().bytes}`);
      return;
    }
  }
  t.ok(total >= 3 * maxBytes, `put ${total} bytes in ${batches} batches`);
  t.ok(peak + reserved <= maxBytes, `peak ${peak} on disk + ${reserved} reserved <= ${maxBytes}`);
  t.ok(cache.stats().evictions > 0, 'blocks were evicted');
  const files = [...(await filesUnder(dir)).keys()];
  t.notOk(files.some((f) => f.endsWith('.tmp')), 'no temp files left');
});

t.test('an evicted file is gone before the bytes replacing it are written, and before reserve resolves', async (t) => {
  const { dir, open } = await setup(t);
  const maxBytes = 3_000;
  const cache = await open(maxBytes);
  for (const x of [block(1_000), block(1_000), block(1_000)]) await cache.put(x.hash, x.bytes);

  // Slow deletions down (until a write starts, or many event-loop turns pass) and measure the disk
  // at the moment each block write starts: a write that did not wait for its room sees the victim.
  const syncDiskBytes = (): number =>
    (fs.readdirSync(dir, { recursive: true, withFileTypes: true }) as fs.Dirent[])
      .filter((e) => e.isFile())
      .reduce((sum, e) => sum + fs.statSync(path.join(e.parentPath, e.name)).size, 0);
  const mutable = fsp as unknown as Record<'rm' | 'writeFile', unknown>;
  const { rm, writeFile } = fsp;
  let writeStarted = false;
  let peak = 0;
  mutable.writeFile = (async (file: string, data: Uint8Array, opts: unknown) => {
    writeStarted = true;
    peak = Math.max(peak, syncDiskBytes() + data.byteLength);
    return writeFile(file, data, opts as Parameters<typeof writeFile>[2]);
  }) as unknown;
  mutable.rm = (async (file: string, opts: Parameters<typeof rm>[1]) => {
    for (let turn = 0; turn < 200 && !writeStarted; turn++) await new Promise((resolve) => setImmediate(resolve));
    return rm(file, opts);
  }) as unknown;
  try {
    await Promise.all([block(1_000), block(1_000)].map((x) => cache.put(x.hash, x.bytes)));
    t.ok(peak <= maxBytes, `peak ${peak} bytes on disk while writing <= ${maxBytes}`);
    writeStarted = false;
    await cache.reserve(2_500);
    t.ok(syncDiskBytes() + 2_500 <= maxBytes, 'after reserve resolves, the evicted files are gone');
  } finally {
    mutable.rm = rm;
    mutable.writeFile = writeFile;
  }
});

t.test('pinned blocks are never evicted (pin counts; a pin before the block arrives protects it)', async (t) => {
  const { open } = await setup(t);
  const cache = await open(1_000);
  const early = block(100);
  const twice = block(100);
  cache.pin(early.hash); // not cached yet
  await cache.put(early.hash, early.bytes);
  await cache.put(twice.hash, twice.bytes);
  cache.pin(twice.hash);
  cache.pin(twice.hash);

  const churn = async (n: number) => {
    for (let i = 0; i < n; i++) {
      const x = block(100);
      await cache.put(x.hash, x.bytes);
    }
  };
  await churn(30);
  t.ok(cache.has(early.hash), 'pinned before arrival: survives 30 puts through a 10-block cache');
  t.ok(cache.has(twice.hash), 'pinned twice: survives');
  t.same(await cache.get(early.hash), early.bytes);

  cache.unpin(twice.hash);
  await churn(30);
  t.ok(cache.has(twice.hash), 'one pin left of two: still survives');

  cache.unpin(twice.hash);
  cache.unpin(early.hash);
  await churn(30);
  t.equal(cache.has(twice.hash), false, 'unpinned: evicted');
  t.equal(cache.has(early.hash), false, 'unpinned: evicted');
  t.throws(() => cache.unpin(early.hash), /not pinned/, 'unpin without a pin is a bug and throws');
  t.ok(cache.stats().bytes <= 1_000);
});

t.test('reserve evicts unpinned blocks, release gives back; CacheFullError when impossible, changing nothing', async (t) => {
  const { dir, open } = await setup(t);
  const cache = await open(1_000);
  const [a, b, c, d] = [block(300), block(300), block(300), block(300)] as const;
  for (const x of [a, b]) await cache.put(x.hash, x.bytes);
  cache.pin(a.hash);

  // 600 cached (300 pinned): 800 would need 400 evicted but only 300 are evictable.
  await t.rejects(cache.reserve(800), CacheFullError, 'reserve beyond what eviction can free fails');
  t.match(cache.stats(), { reservedBytes: 0, blocks: 2, evictions: 0 }, 'nothing reserved and nothing evicted');

  await cache.reserve(700);
  t.match(cache.stats(), { reservedBytes: 700, blocks: 1, bytes: 300, evictions: 1 }, 'reserve evicted the unpinned block');
  t.equal(cache.has(b.hash), false);
  t.ok(cache.has(a.hash), 'the pinned block stays');

  const err = await cache.put(c.hash, c.bytes).catch((e: unknown) => e);
  t.type(err, CacheFullError, 'a put that cannot fit fails');
  t.equal((err as CacheFullError).code, 'ENOSPC');
  t.equal(cache.has(c.hash), false, 'nothing stored');
  t.same([...(await filesUnder(dir)).keys()], [path.relative(dir, blockFile(dir, a.hash))], 'only the pinned block is on disk, no temp file');
  await t.rejects(cache.reserve(1), CacheFullError, 'a full cache cannot reserve even 1 byte');

  cache.release(700);
  t.equal(cache.stats().reservedBytes, 0);
  await cache.put(c.hash, c.bytes);
  await cache.put(d.hash, d.bytes);
  t.ok(cache.has(c.hash) && cache.has(d.hash), 'after release the puts fit');
  t.throws(() => cache.release(1), RangeError, 'releasing more than reserved throws');

  await t.rejects(cache.put(block(1_001).hash, block(1_001).bytes), CacheFullError, 'a block larger than maxBytes never fits');
  t.equal(cache.stats().bytes, 900);
});

t.test('restart: a reopened cache has the same blocks, keeps LRU order, and evicts down to a smaller bound', async (t) => {
  const { dir, open } = await setup(t);
  const [a, b, c] = [block(300), block(300), block(300)] as const;
  const first = await open(1_000);
  for (const x of [a, b, c]) await first.put(x.hash, x.bytes);
  t.equal(first.readSync(a.hash, Buffer.alloc(1), 0, 1, 0), 1, 'read A: order is B, C, A');
  await first.close();
  await t.rejects(first.put(block(1).hash, Buffer.alloc(1)), /closed/, 'a closed cache refuses puts');

  const second = await open(1_000);
  t.match(second.stats(), { blocks: 3, bytes: 900, evictions: 0 }, 'same blocks after reopening');
  for (const x of [a, b, c]) t.ok(second.has(x.hash));
  t.same(await second.get(c.hash), c.bytes, 'same bytes after reopening'); // touches C: order B, A, C
  await second.close();

  const third = await open(650);
  t.match(third.stats(), { blocks: 2, bytes: 600, maxBytes: 650, evictions: 1 }, 'evicted down to the smaller bound');
  t.equal(third.has(b.hash), false, 'the least recently used block (across both sessions) went');
  t.same(await third.get(a.hash), a.bytes);
  t.same(await third.get(c.hash), c.bytes);
  t.equal(await bytesOnDisk(dir), 600, 'and its file is gone');
});

t.test('restart keeps the LRU order of reads that file access times miss (relatime, noatime)', async (t) => {
  const { open } = await setup(t);
  const [a, b] = [block(500), block(500)] as const;
  const first = await open(1_000);
  for (const x of [a, b]) await first.put(x.hash, x.bytes);
  const one = Buffer.alloc(1);
  first.readSync(b.hash, one, 0, 1, 0);
  first.readSync(a.hash, one, 0, 1, 0);
  first.readSync(b.hash, one, 0, 1, 0); // B is the most recent; relatime does not record this read
  await first.close();

  const second = await open(500);
  t.ok(second.has(b.hash), 'the most recently read block survives the smaller bound');
  t.equal(second.has(a.hash), false);
});

t.test('open deletes leftover temp files (a put cut short by a crash) and does not count them', async (t) => {
  const { dir, open } = await setup(t);
  const a = block(500);
  const torn = block(500);
  const folder = path.dirname(blockFile(dir, torn.hash));
  await fsp.mkdir(folder, { recursive: true });
  const leftover = path.join(folder, `.${torn.hash}.0123456789ab.tmp`);
  await fsp.writeFile(leftover, torn.bytes.subarray(0, 200));
  await fsp.mkdir(path.dirname(blockFile(dir, a.hash)), { recursive: true });
  await fsp.writeFile(blockFile(dir, a.hash), a.bytes);

  const cache = await open(1_000);
  t.notOk(fs.existsSync(leftover), 'temp file removed');
  t.match(cache.stats(), { blocks: 1, bytes: 500 }, 'only the whole block is indexed');
  t.equal(cache.has(torn.hash), false, 'the torn block is not cached');
  t.same(await cache.get(a.hash), a.bytes);
});

t.test('concurrent puts of the same hash store it once and count it once', async (t) => {
  const { dir, open } = await setup(t);
  const cache = await open(10_000);
  const a = block(4_000);
  await Promise.all(Array.from({ length: 5 }, () => cache.put(a.hash, a.bytes)));
  await cache.put(a.hash, a.bytes); // and once more after it is cached
  t.match(cache.stats(), { blocks: 1, bytes: 4_000 });
  t.same([...(await filesUnder(dir)).entries()], [[path.relative(dir, blockFile(dir, a.hash)), 4_000]], 'one file on disk');
  t.same(await cache.get(a.hash), a.bytes);
});

const procFds = fs.existsSync('/proc/self/fd');
t.test('descriptors kept for readSync stay few, and an evicted block keeps none (its disk space is freed)', { skip: procFds ? false : 'needs /proc/self/fd' }, async (t) => {
  const { dir, open } = await setup(t);
  const openInto = async (): Promise<string[]> => {
    const links = await Promise.all(
      (await fsp.readdir('/proc/self/fd')).map((fd) => fsp.readlink(path.join('/proc/self/fd', fd)).catch(() => '')),
    );
    return links.filter((l) => l.startsWith(dir));
  };
  const cache = await open(200_000);
  const blocks = Array.from({ length: 100 }, () => block(1_000));
  for (const x of blocks) await cache.put(x.hash, x.bytes);
  for (const x of blocks) t.equal(cache.readSync(x.hash, Buffer.alloc(10), 0, 10, 0), 10);
  const held = await openInto();
  t.ok(held.length <= 64, `${held.length} descriptors held after reading 100 blocks`);

  const big = block(150_000);
  await cache.put(big.hash, big.bytes); // evicts at least 50 blocks, including the most recently read
  t.ok(cache.stats().evictions >= 50);
  const deletedHeld = (await openInto()).filter((l) => l.endsWith('(deleted)'));
  t.same(deletedHeld, [], 'no descriptor of a deleted block file is held');
});

t.test('a key that is not a block hash is rejected with a clear error', async (t) => {
  const { open } = await setup(t);
  const cache = await open(1_000);
  const upper = block(1).hash.toUpperCase();
  const bad = /not a block hash/;
  await t.rejects(cache.put('abc', Buffer.alloc(1)), bad);
  await t.rejects(cache.get('../../etc/passwd'), bad);
  t.throws(() => cache.has(upper), bad, 'upper case is not a block hash');
  t.throws(() => cache.readSync('', Buffer.alloc(1), 0, 1, 0), bad);
  t.throws(() => cache.pin('x'.repeat(64)), bad);
  t.throws(() => cache.unpin('0'.repeat(63)), bad);
});

t.test('integrity: blocks found at open are not served by readSync until verified; drop removes a bad one (index and file)', async (t) => {
  const { dir, open } = await setup(t);
  const [a, b] = [block(1_000), block(1_000)] as const;
  const first = await open(10_000);
  for (const x of [a, b]) await first.put(x.hash, x.bytes);
  t.ok(first.isVerified(a.hash), 'a put block is verified (its caller vouches for it)');
  await first.close();

  const cache = await open(10_000);
  const target = Buffer.alloc(100);
  t.notOk(cache.isVerified(a.hash), 'found on disk: not verified in this process');
  t.equal(cache.readSync(a.hash, target, 0, 100, 0), -1, 'so readSync does not serve it');
  t.same(target, Buffer.alloc(100), 'and copies nothing');
  t.same(await cache.get(a.hash), a.bytes, 'get returns the file for the caller to check');
  t.equal(cache.markVerified(a.hash, 999), false, 'markVerified with another size does nothing');
  t.equal(cache.markVerified(a.hash, 1_000), true);
  t.equal(cache.readSync(a.hash, target, 0, 100, 0), 100, 'verified: served');
  t.same(target, a.bytes.subarray(0, 100));

  cache.pin(b.hash);
  await cache.drop(b.hash);
  t.equal(cache.has(b.hash), false, 'a dropped block leaves the index (also when pinned)');
  t.notOk(fs.existsSync(blockFile(dir, b.hash)), 'its file is gone when drop resolves');
  t.match(cache.stats(), { blocks: 1, bytes: 1_000, dropped: 1, evictions: 0 }, 'accounting follows');
  await cache.put(b.hash, b.bytes);
  t.ok(cache.isVerified(b.hash), 'put again: cached and verified');
  cache.unpin(b.hash);
  t.equal(cache.readSync(b.hash, target, 0, 100, 0), 100);
  await cache.drop(block(10).hash); // not cached: nothing to do
  t.equal(cache.stats().dropped, 1);
});

t.test('integrity: a verified block whose file got shorter is not served past its end and needs checking again', async (t) => {
  const { dir, open } = await setup(t);
  const a = block(10_000);
  const cache = await open(100_000);
  await cache.put(a.hash, a.bytes);
  const target = Buffer.alloc(10_000);
  t.equal(cache.readSync(a.hash, target, 0, 10_000, 0), 10_000, 'served while whole');
  await damageFile(blockFile(dir, a.hash), 'truncate'); // the descriptor kept for readSync sees it

  t.equal(cache.readSync(a.hash, target, 0, 100, 100), 100, 'a read before the cut still reads (those bytes are the verified ones)');
  t.same(target.subarray(0, 100), a.bytes.subarray(100, 200));
  t.equal(cache.readSync(a.hash, target, 0, 1_000, 4_500), -1, 'a read across the cut is -1, not short');
  t.notOk(cache.isVerified(a.hash), 'and the block is unverified again');
  t.equal(cache.readSync(a.hash, target, 0, 100, 0), -1, 'so nothing of it is served until it is checked');
  t.equal((await cache.get(a.hash))?.length, 5_000, 'get shows the caller what is on disk');
});
