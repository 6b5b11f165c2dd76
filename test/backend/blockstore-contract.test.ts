import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { Storage } from '@google-cloud/storage';
import t, { type Test } from 'tap';
import { BlockNotFoundError, BlockTruncatedError, type BlockStore } from '../../backend/blockstore/blockstore.js';
import { DiskBlockStore } from '../../backend/blockstore/disk.js';
import { GcsBlockStore } from '../../backend/blockstore/gcs.js';
import { randomBlock } from '../helpers/backend.js';
import { startGcsEmulator, type GcsEmulator } from '../helpers/gcs.js';
import { failingSource, filesUnder, listAll, readAll } from '../helpers/blockstore.js';

/**
 * The BlockStore contract (backend/blockstore/blockstore.ts), the same cases on every engine:
 * the local disk and Google Cloud Storage (the emulator of test/helpers/gcs.ts). Engine-specific
 * cases live in blockstore-disk.test.ts and blockstore-gcs.test.ts.
 */

interface Opened {
  store: BlockStore;
  /** Names of the engine's temporary objects/files (what an unfinished put holds). */
  temps(): Promise<string[]>;
  /** Everything the engine holds for this store, temp or published, as names. */
  everything(): Promise<string[]>;
}

interface Engine {
  name: string;
  open(t: Test): Promise<Opened>;
}

const disk: Engine = {
  name: 'disk',
  async open(t) {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-blockstore-'));
    t.teardown(() => fs.rm(root, { recursive: true, force: true }));
    const store = await DiskBlockStore.open(root);
    t.teardown(() => store.close());
    return { store, temps: () => fs.readdir(path.join(root, 'tmp')), everything: () => filesUnder(root) };
  },
};

function gcsEngine(emulator: () => GcsEmulator): Engine {
  return {
    name: 'gcs',
    async open(t) {
      const emu = emulator();
      const store = await GcsBlockStore.open(emu.blocksUrl());
      t.teardown(() => store.close());
      // A separate client, to see the bucket as it is rather than through the store.
      const bucket = new Storage().bucket(emu.bucket);
      const names = async (prefix: string) => (await bucket.getFiles({ prefix }))[0].map((f) => f.name.slice(prefix.length)).sort();
      return { store, temps: () => names(store.tempPrefix), everything: () => names(store.location.prefix) };
    },
  };
}

/** All the bytes pass, then the stream fails at its end: what a hash mismatch in the verifying stream does. */
function failingAtEnd(bytes: Buffer): Readable {
  const check = new Transform({
    transform: (chunk, _enc, done) => done(null, chunk),
    flush: (done) => done(new Error('hash mismatch at the end')),
  });
  return Readable.from([bytes.subarray(0, 1000), bytes.subarray(1000)]).pipe(check);
}

function contract(t: Test, engine: Engine): void {
  t.test('put, then get, has and list return the block; delete removes it', async (t) => {
    const { store } = await engine.open(t);
    const a = randomBlock(100_000);
    const b = randomBlock(10);
    t.equal(await store.has(a.hash), false, 'absent before put');
    await store.put(a.hash, Readable.from([a.bytes.subarray(0, 4000), a.bytes.subarray(4000)]));
    await store.put(b.hash, Readable.from([b.bytes]));
    t.equal(await store.has(a.hash), true);
    t.same(await readAll(await store.get(a.hash)), a.bytes, 'whole block round-trips');
    t.same(await readAll(await store.get(b.hash)), b.bytes);
    t.same(await listAll(store), [a.hash, b.hash].sort(), 'list names exactly the stored blocks');

    await store.delete(a.hash);
    t.equal(await store.has(a.hash), false, 'absent after delete');
    t.same(await listAll(store), [b.hash]);
    await t.rejects(store.get(a.hash), BlockNotFoundError, 'get of a deleted block rejects with BlockNotFoundError');
    await store.delete(a.hash); // deleting an absent block is not an error
  });

  t.test('a block of the largest size (4 MiB) round-trips byte-identical', async (t) => {
    const { store } = await engine.open(t);
    const a = randomBlock(4 * 1024 * 1024);
    const parts: Buffer[] = [];
    for (let i = 0; i < a.bytes.length; i += 65_536) parts.push(a.bytes.subarray(i, i + 65_536));
    await store.put(a.hash, Readable.from(parts));
    const back = await readAll(await store.get(a.hash));
    t.equal(back.length, a.bytes.length, 'all of it stored (no truncation)');
    t.ok(back.equals(a.bytes), 'the same bytes');
    t.ok((await readAll(await store.get(a.hash, { start: 4 * 1024 * 1024 - 10, end: 4 * 1024 * 1024 - 1 }))).equals(a.bytes.subarray(-10)), 'its last bytes');
  });

  t.test('get of a range returns exactly those bytes, both ends inclusive', async (t) => {
    const { store } = await engine.open(t);
    const a = randomBlock(50_000);
    await store.put(a.hash, Readable.from([a.bytes]));
    t.same(await readAll(await store.get(a.hash, { start: 0, end: 0 })), a.bytes.subarray(0, 1), 'first byte');
    t.same(await readAll(await store.get(a.hash, { start: 100, end: 199 })), a.bytes.subarray(100, 200), 'middle');
    t.same(await readAll(await store.get(a.hash, { start: 49_999, end: 49_999 })), a.bytes.subarray(49_999), 'last byte');
    t.same(await readAll(await store.get(a.hash, { start: 0, end: 49_999 })), a.bytes, 'whole block as a range');
    await t.rejects(store.get(a.hash, { start: 49_000, end: 50_000 }), BlockTruncatedError, 'a range past the end: the block is shorter than recorded');
  });

  t.test('a block never stored: get rejects with BlockNotFoundError naming it, has is false, delete is fine', async (t) => {
    const { store } = await engine.open(t);
    const a = randomBlock(10);
    for (const range of [undefined, { start: 0, end: 4 }]) {
      const err = await store.get(a.hash, range).then(
        () => null,
        (e: unknown) => e,
      );
      t.type(err, BlockNotFoundError, range ? 'ranged get' : 'get');
      t.equal((err as BlockNotFoundError).hash, a.hash);
    }
    t.equal(await store.has(a.hash), false);
    await store.delete(a.hash);
    t.same(await listAll(store), []);
  });

  t.test('an aborted upload (the body errors midway) leaves nothing: not visible, no temp left', async (t) => {
    const { store, temps, everything } = await engine.open(t);
    const a = randomBlock(300_000);
    const chunks = [a.bytes.subarray(0, 65_536), a.bytes.subarray(65_536, 131_072)];
    await t.rejects(store.put(a.hash, failingSource(chunks)), { message: 'source failed midway' });
    t.equal(await store.has(a.hash), false);
    await t.rejects(store.get(a.hash), BlockNotFoundError);
    t.same(await listAll(store), []);
    t.same(await temps(), [], 'no temp left behind');
    t.same(await everything(), [], 'nothing anywhere in the store');

    await t.rejects(store.put(a.hash, failingSource([])), { message: 'source failed midway' }, 'fails before any byte');
    await t.rejects(store.put(a.hash, failingAtEnd(a.bytes)), { message: 'hash mismatch at the end' }, 'fails after the last byte (verification)');
    t.same(await everything(), [], 'still nothing');

    // A failed put does not prevent a later good one.
    await store.put(a.hash, Readable.from([a.bytes]));
    t.same(await readAll(await store.get(a.hash)), a.bytes);
    t.same(await temps(), []);
  });

  t.test('beforePublish runs once, after every byte is received and before the block is visible; if it throws nothing is published', async (t) => {
    const { store, temps, everything } = await engine.open(t);
    const a = randomBlock(200_000);
    let calls = 0;
    let visibleDuringHook: boolean | undefined;
    let consumedDuringHook = false;
    const source = Readable.from([a.bytes.subarray(0, 100_000), a.bytes.subarray(100_000)]);
    source.on('end', () => (consumedDuringHook = true));
    await store.put(a.hash, source, {
      beforePublish: async () => {
        calls++;
        visibleDuringHook = await store.has(a.hash);
        t.ok(consumedDuringHook, 'the body has ended when the hook runs');
      },
    });
    t.equal(calls, 1, 'called once');
    t.equal(visibleDuringHook, false, 'not visible while the hook runs');
    t.equal(await store.has(a.hash), true, 'visible after');

    const b = randomBlock(50_000);
    await t.rejects(
      store.put(b.hash, Readable.from([b.bytes]), {
        beforePublish: async () => {
          throw new Error('claimed by the GC');
        },
      }),
      { message: 'claimed by the GC' },
    );
    t.equal(await store.has(b.hash), false, 'not published');
    await t.rejects(store.get(b.hash), BlockNotFoundError);
    t.same(await listAll(store), [a.hash]);
    t.same(await temps(), [], 'no temp left behind');
    t.equal((await everything()).filter((n) => n.includes(b.hash)).length, 0, 'no trace of the refused block');

    // A body that fails is not followed by the hook.
    let called = false;
    await t.rejects(store.put(b.hash, failingSource([b.bytes.subarray(0, 100)]), { beforePublish: async () => void (called = true) }));
    t.equal(called, false, 'no hook for a body that failed');
  });

  t.test('a put that fails over a block already stored leaves the stored block intact', async (t) => {
    const { store, temps } = await engine.open(t);
    const a = randomBlock(100_000);
    await store.put(a.hash, Readable.from([a.bytes]));
    await t.rejects(store.put(a.hash, failingSource([Buffer.alloc(1000)])));
    await t.rejects(store.put(a.hash, failingAtEnd(Buffer.alloc(100_000))));
    await t.rejects(store.put(a.hash, Readable.from([a.bytes]), { beforePublish: () => Promise.reject(new Error('no')) }));
    t.same(await readAll(await store.get(a.hash)), a.bytes, 'the good copy is still whole');
    t.same(await temps(), []);
  });

  t.test('concurrent puts of one hash end with one correct block; failing ones among them change nothing', async (t) => {
    const { store, temps, everything } = await engine.open(t);
    const a = randomBlock(500_000);
    await store.put(a.hash, Readable.from([a.bytes]));
    await store.put(a.hash, Readable.from([a.bytes.subarray(0, 7), a.bytes.subarray(7)]));
    const b = randomBlock(1_000_000);
    const results = await Promise.allSettled([
      store.put(b.hash, Readable.from([b.bytes])),
      store.put(b.hash, Readable.from([b.bytes.subarray(0, 300_000), b.bytes.subarray(300_000)])),
      store.put(b.hash, failingSource([b.bytes.subarray(0, 400_000)])),
      store.put(b.hash, failingAtEnd(Buffer.alloc(1_000_000))),
      store.put(b.hash, Readable.from([b.bytes])),
      store.put(a.hash, Readable.from([a.bytes])),
    ]);
    t.same(
      results.map((r) => r.status),
      ['fulfilled', 'fulfilled', 'rejected', 'rejected', 'fulfilled', 'fulfilled'],
    );
    t.same(await listAll(store), [a.hash, b.hash].sort(), 'each listed once');
    t.same(await temps(), [], 'no temp left');
    t.equal((await everything()).length, 2, 'exactly two objects/files held');
    t.ok((await readAll(await store.get(a.hash))).equals(a.bytes));
    t.ok((await readAll(await store.get(b.hash))).equals(b.bytes));
  });

  t.test('list names every block, however many', async (t) => {
    const { store } = await engine.open(t);
    const blocks = Array.from({ length: 23 }, () => randomBlock(100));
    await Promise.all(blocks.map((b) => store.put(b.hash, Readable.from([b.bytes]))));
    t.same(await listAll(store), blocks.map((b) => b.hash).sort());
  });

  t.test('a malformed block id is refused before anything is stored', async (t) => {
    const { store, everything } = await engine.open(t);
    const a = randomBlock(10);
    for (const bad of [a.hash.toUpperCase(), a.hash.slice(1), '../../etc/passwd', `${a.hash.slice(0, 63)}g`]) {
      await t.rejects(store.put(bad, Readable.from([a.bytes])), /not a block id/, `put ${JSON.stringify(bad)}`);
      await t.rejects(store.get(bad), /not a block id/, `get ${JSON.stringify(bad)}`);
    }
    t.same(await everything(), []);
  });
}

t.test('disk', async (t) => contract(t, disk));

t.test('gcs (emulator)', async (t) => {
  const emu = await startGcsEmulator(t);
  contract(t, gcsEngine(() => emu));
});
