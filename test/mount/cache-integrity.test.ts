import crypto from 'node:crypto';
import { constants as fsc } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { toErrno } from '../../mount/model/errors.js';
import { blake3Hex } from '../../protocol/hash.js';
import type { BlockRef } from '../../protocol/types.js';
import { startTestBackend, type TestBackend } from '../helpers/backend.js';
import { cachedBlockFile, damageFile } from '../helpers/corrupt.js';
import {
  assembleVfs,
  drained,
  Faults,
  logWatcher,
  readAll,
  readFh,
  restartVfs,
  serverBytes,
  serverChild,
  SMALL_CHUNKING,
  writeAll,
  type VfsHarness,
} from '../helpers/vfs.js';

/**
 * Cached blocks are verified before the mount trusts them (issue 9, finding 2): a block file in
 * the cache flipped or truncated on disk is never served nor copied into staging; it is dropped,
 * logged and fetched again, or the reader gets EIO when the server is unreachable. A block is
 * hashed (in the chunker pool, off the event loop) on its first use in a process, then served by
 * the cached-read path as long as its file keeps its size. The Vfs without FUSE over a real
 * in-process server; restarts reassemble the mount on the same cache folder.
 */

const KiB = 1024;
const CHUNKING = SMALL_CHUNKING;

let backend: TestBackend;
let users = 0;

t.before(async () => {
  backend = await startTestBackend('sqlite', { chunking: CHUNKING });
});
t.teardown(() => backend?.close());

interface Setup {
  /** The current harness (restarts replace it), closed at teardown. */
  ref: { h: VfsHarness };
  faults: Faults;
  logs: ReturnType<typeof logWatcher>;
  data: Buffer;
  blocks: BlockRef[];
  cacheDir: string;
  /** Restarts the mount on its cache folder: every cached block is then unverified in the new process. */
  restart(): Promise<VfsHarness>;
  /** Counts what the chunker pool of the current harness hashes from now on: files (cached blocks) and bytes (fetched blocks). */
  poolHashes(): { files: number; bytes: number };
}

/** A fresh user whose /f.bin (600 KiB, several blocks) was written through the mount, committed and is cached. */
async function setup(t: Test): Promise<Setup> {
  const user = await backend.addUser(`ci${++users}`);
  const cacheDir = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-ci-'));
  const faults = new Faults();
  const logs = logWatcher();
  const ref = { h: await assembleVfs({ url: backend.url, token: user.token, cacheDir, wrapClient: faults.wrap, source: { log: logs.log } }) };
  t.teardown(async () => {
    await ref.h.close();
    await fs.rm(cacheDir, { recursive: true, force: true });
  });
  const data = crypto.randomBytes(600 * KiB);
  await writeAll(ref.h.vfs, '/f.bin', data, { create: true });
  await drained(ref.h.queue);
  const node = await serverChild(user.client, 'f.bin');
  const { blocks } = await user.client.manifest(node!.id);
  t.ok(blocks.length >= 4, `the file has ${blocks.length} blocks`);
  for (const b of blocks) t.ok(ref.h.cache.has(b.hash), `block ${b.hash.slice(0, 8)} is cached (the upload keeps it warm)`);
  return {
    ref,
    faults,
    logs,
    data,
    blocks,
    cacheDir,
    restart: async () => (ref.h = await restartVfs(ref.h, 'close')),
    poolHashes: () => {
      const counter = { files: 0, bytes: 0 };
      const pool = ref.h.pool;
      const [hash, hashFile] = [pool.hash.bind(pool), pool.hashFile.bind(pool)];
      pool.hash = (bytes) => (counter.bytes++, hash(bytes));
      pool.hashFile = (file, size) => (counter.files++, hashFile(file, size));
      return counter;
    },
  };
}

/** Log lines that name block `hash`. */
function linesAbout(logs: { lines: string[] }, hash: string): string[] {
  return logs.lines.filter((l) => l.includes(hash));
}

async function fileHashesRight(cacheDir: string, hash: string): Promise<boolean> {
  return blake3Hex(await fs.readFile(cachedBlockFile(cacheDir, hash))) === hash;
}

t.test('cached blocks flipped or truncated on disk are dropped and fetched again: the reader gets the right bytes, also after a restart', async (t) => {
  const s = await setup(t);
  const [flipped, cut] = [s.blocks[0]!, s.blocks[2]!];
  let h = await s.restart();
  await damageFile(cachedBlockFile(s.cacheDir, flipped.hash), 'flip');
  await damageFile(cachedBlockFile(s.cacheDir, cut.hash), 'truncate');
  const hashes = s.poolHashes();

  t.ok((await readAll(h.vfs, '/f.bin')).equals(s.data), 'the whole file reads right');
  t.equal(h.source.stats.fetches, 2, 'only the two bad blocks were fetched');
  t.equal(h.source.stats.cacheCorrupt, 2, 'two cached blocks found bad');
  t.equal(h.source.stats.cacheChecks, s.blocks.length, 'every cached block was checked on its first use');
  t.same(hashes, { files: s.blocks.length, bytes: 2 }, 'all in the chunker pool (the event loop hashes nothing): each cached file, and the two blocks fetched');
  await h.source.stored();
  for (const b of [flipped, cut]) {
    t.equal(linesAbout(s.logs, b.hash).length, 1, `block ${b.hash.slice(0, 8)} is logged once`);
    t.ok(await fileHashesRight(s.cacheDir, b.hash), `its cache file now holds the right bytes`);
  }

  t.ok((await readAll(h.vfs, '/f.bin')).equals(s.data), 'read again: right');
  t.equal(h.source.stats.cacheChecks, s.blocks.length, 'verified blocks are not hashed again in this process');
  t.same(hashes, { files: s.blocks.length, bytes: 2 }, 'no more hashing');
  t.equal(h.source.stats.fetches, 2, 'nor fetching');

  h = await s.restart();
  t.ok((await readAll(h.vfs, '/f.bin')).equals(s.data), 'after a restart: right');
  t.equal(h.source.stats.fetches, 0, 'from the cache alone');
  t.equal(h.source.stats.cacheCorrupt, 0, 'which is sound now');
});

t.test('a verified block whose file shrinks afterwards is checked again: the reader gets the right bytes', async (t) => {
  const s = await setup(t);
  const h = await s.restart();
  t.ok((await readAll(h.vfs, '/f.bin')).equals(s.data), 'first read (every block verified)');
  t.equal(h.source.stats.fetches, 0);
  const cut = s.blocks[1]!;
  await damageFile(cachedBlockFile(s.cacheDir, cut.hash), 'truncate');

  const fh = await h.vfs.open('/f.bin', fsc.O_RDONLY);
  try {
    const at = s.blocks[0]!.size;
    const got = await readFh(h.vfs, fh, cut.size, at);
    t.ok(got.equals(s.data.subarray(at, at + cut.size)), 'a read of the whole block is right');
  } finally {
    await h.vfs.release(fh);
  }
  t.equal(h.source.stats.cacheCorrupt, 1, 'the short file was found bad');
  t.equal(h.source.stats.fetches, 1, 'and the block fetched again');
  await h.source.stored();
  t.ok(await fileHashesRight(s.cacheDir, cut.hash), 'its cache file holds the right bytes');
  t.ok((await readAll(h.vfs, '/f.bin')).equals(s.data), 'the whole file reads right');
});

t.test('staging is filled with verified bytes only: a file whose cached blocks are bad, read and appended to through one descriptor, commits the right bytes', async (t) => {
  const s = await setup(t);
  const h = await s.restart();
  await damageFile(cachedBlockFile(s.cacheDir, s.blocks[0]!.hash), 'flip');
  await damageFile(cachedBlockFile(s.cacheDir, s.blocks[1]!.hash), 'truncate');
  await damageFile(cachedBlockFile(s.cacheDir, s.blocks[3]!.hash), 'flip');

  const tail = Buffer.from('one more line\n');
  const fh = await h.vfs.open('/f.bin', fsc.O_RDWR);
  try {
    // Reading through the writer fills its staging file from the version it opened (the cache, then the server).
    t.ok((await readFh(h.vfs, fh, s.data.length, 0)).equals(s.data), 'the writer reads the right bytes');
    await h.vfs.write(fh, tail, tail.length, s.data.length);
  } finally {
    await h.vfs.release(fh);
  }
  await drained(h.queue);
  const node = await serverChild(h.client, 'f.bin');
  t.equal(node?.head_version, 2, 'the append is version 2');
  const { bytes } = await serverBytes(h.client, node!.id);
  t.ok(bytes.equals(Buffer.concat([s.data, tail])), 'the server holds the original bytes plus the line');
  t.equal(h.source.stats.cacheCorrupt, 3, 'the three bad blocks were caught');
});

t.test('with the server unreachable a bad cached block is EIO, never its bytes; sound cached blocks still read', async (t) => {
  const s = await setup(t);
  const h = await s.restart();
  const bad = s.blocks[1]!;
  const sound = s.blocks[3]!;
  await damageFile(cachedBlockFile(s.cacheDir, bad.hash), 'flip');
  s.faults.offline.add('getBlock');

  const fh = await h.vfs.open('/f.bin', fsc.O_RDONLY);
  try {
    const at = s.blocks[0]!.size;
    const target = Buffer.alloc(bad.size);
    try {
      const n = await h.vfs.read(fh, target, bad.size, at);
      t.fail(`the bad block read ${n} bytes (${target.subarray(0, n).equals(s.data.subarray(at, at + n)) ? 'right' : 'wrong'} ones)`);
    } catch (err) {
      t.equal(toErrno(err), os.constants.errno.EIO, `reading it fails with EIO (${String(err)})`);
    }
    t.ok(target.equals(Buffer.alloc(bad.size)), 'and nothing was copied to the reader');
    const soundAt = s.blocks.slice(0, 3).reduce((sum, b) => sum + b.size, 0);
    t.ok((await readFh(h.vfs, fh, sound.size, soundAt)).equals(s.data.subarray(soundAt, soundAt + sound.size)), 'a sound cached block reads right');

    s.faults.offline.delete('getBlock');
    t.ok((await readFh(h.vfs, fh, bad.size, at)).equals(s.data.subarray(at, at + bad.size)), 'once the server is back the block reads right');
  } finally {
    await h.vfs.release(fh);
  }
  t.equal(linesAbout(s.logs, bad.hash).length, 1, 'the bad block is logged once');
});
