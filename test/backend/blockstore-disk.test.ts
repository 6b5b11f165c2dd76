import fsCallbacks from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Readable, Transform } from 'node:stream';
import t, { type Test } from 'tap';
import { DiskBlockStore } from '../../backend/blockstore/disk.js';
import { randomBlock } from '../helpers/backend.js';
import { failingSource, filesUnder, listAll, readAll } from '../helpers/blockstore.js';

/**
 * Unit tests of the local-disk block store, without a server: what is particular to the disk (the
 * cases every engine shares are in blockstore-contract.test.ts).
 */

async function freshStore(t: Test): Promise<{ store: DiskBlockStore; root: string }> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-blockstore-'));
  t.teardown(() => fs.rm(root, { recursive: true, force: true }));
  const store = await DiskBlockStore.open(root);
  t.teardown(() => store.close());
  return { store, root };
}

t.test('a put whose source fails before the temp file is even open (slow disk) leaves no temp file', async (t) => {
  const { store, root } = await freshStore(t);
  // A disk slow to create files: fs.open (which the store's write stream uses) starts 20 ms late,
  // so the source fails while the temp file is still being created.
  const realOpen = fsCallbacks.open;
  const opened: Array<Promise<void>> = [];
  (fsCallbacks as { open: unknown }).open = (...args: unknown[]) => {
    const callback = args.pop() as (...r: unknown[]) => void;
    opened.push(
      new Promise((resolve) => {
        setTimeout(() => {
          (realOpen as (...a: unknown[]) => void)(...args, (...result: unknown[]) => {
            callback(...result);
            resolve();
          });
        }, 20);
      }),
    );
  };
  t.teardown(() => {
    fsCallbacks.open = realOpen;
  });
  const cases: Array<[string, (a: { bytes: Buffer; hash: string }) => Readable]> = [
    ['the source fails before any byte', () => failingSource([])],
    ['the source fails after some bytes', (a) => failingSource([a.bytes.subarray(0, 5000)])],
    ['the source is destroyed on the next tick', () => {
      const s = new PassThrough();
      process.nextTick(() => s.destroy(new Error('source failed midway')));
      return s;
    }],
    ['a transform fails at its end (as a hash mismatch does)', (a) => {
      const check = new Transform({
        transform: (chunk, _enc, done) => done(null, chunk),
        flush: (done) => done(new Error('source failed midway')),
      });
      return Readable.from([a.bytes]).pipe(check);
    }],
  ];
  for (const [when, source] of cases) {
    const a = randomBlock(10_000);
    await t.rejects(store.put(a.hash, source(a)), { message: 'source failed midway' }, when);
    await Promise.all(opened); // every open the put started has completed
    t.same(await fs.readdir(path.join(root, 'tmp')), [], `${when}: no temp file left behind`);
    t.same(await listAll(store), [], `${when}: nothing stored`);
  }
});

t.test('temp files a crashed put left are removed when the store opens; younger ones (another process uploading) are left alone', async (t) => {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-blockstore-'));
  t.teardown(() => fs.rm(root, { recursive: true, force: true }));
  const first = await DiskBlockStore.open(root);
  const a = randomBlock(1000);
  await first.put(a.hash, Readable.from([a.bytes]));
  await first.close();
  // What a crash mid-put leaves: a partly written temp file.
  const crashed = path.join(root, 'tmp', `${a.hash.replace(/^./, 'f')}.abcdef012345`);
  await fs.writeFile(crashed, Buffer.alloc(500));
  await fs.writeFile(path.join(root, 'tmp', 'another-leftover'), 'x');
  const hourAgo = new Date(Date.now() - 61 * 60_000);
  for (const f of [crashed, path.join(root, 'tmp', 'another-leftover')]) await fs.utimes(f, hourAgo, hourAgo);
  // Another process's upload in progress (a server next to `stratus gc`).
  await fs.writeFile(path.join(root, 'tmp', 'uploading-now'), 'y');

  const reopened = await DiskBlockStore.open(root);
  t.teardown(() => reopened.close());
  t.same(await fs.readdir(path.join(root, 'tmp')), ['uploading-now'], 'the leftovers are gone; the upload in progress stays');
  t.same(await listAll(reopened), [a.hash], 'blocks already in place survive the cleanup');
  t.same(await readAll(await reopened.get(a.hash)), a.bytes);
});

t.test('a block is one file at ab/cd/<hash>, also when put twice at once', async (t) => {
  const { store, root } = await freshStore(t);
  const a = randomBlock(20_000);
  await Promise.all([store.put(a.hash, Readable.from([a.bytes])), store.put(a.hash, Readable.from([a.bytes]))]);
  t.same(await filesUnder(root), [path.join(a.hash.slice(0, 2), a.hash.slice(2, 4), a.hash)], 'exactly one file on disk');
});
