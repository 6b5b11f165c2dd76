import fs from 'node:fs/promises';
import t from 'tap';
import { startTestBackend } from '../helpers/backend.js';
import { assembleVfs, drained, tempCacheDir } from '../helpers/vfs.js';
import { runSuite } from './suite.js';
import { VfsDriver } from './vfs-driver.js';

/*
 * The conformance suite (test/conformance/suite.ts) on the in-process Vfs over a real in-process
 * server: every case as the FUSE adapter would see it, with the kernel's part played by
 * VfsDriver. Small chunks, so a file of a megabyte or two is several blocks. A failing call must
 * leave the whole server (database and block store) unchanged. After the suite: no handle, staging
 * file or cache reservation is left behind.
 */

const KiB = 1024;
const backend = await startTestBackend('sqlite', { chunking: { min: 16 * KiB, avg: 64 * KiB, max: 256 * KiB } });
t.teardown(() => backend.close());
const user = await backend.addUser('conformance');
const h = await assembleVfs({ url: backend.url, token: user.token, cacheDir: await tempCacheDir(t) });
t.teardown(() => h.close());
const driver = new VfsDriver(h, () => backend.snapshot());

await runSuite(t, driver, { only: process.env.STRATUS_CONFORMANCE_ONLY ? new RegExp(process.env.STRATUS_CONFORMANCE_ONLY) : undefined });

t.test('after the suite: every descriptor closed, every commit landed, nothing left in staging or reserved', async (t) => {
  t.equal(driver.openDescriptors, 0, 'the cases closed what they opened');
  await drained(h.queue);
  t.equal(h.vfs.openHandles, 0, 'no Vfs handle is left open');
  t.same(await fs.readdir(h.stagingDir), [], 'no staging file is left');
  t.equal(h.cache.stats().reservedBytes, 0, 'no cache room is held');
});
