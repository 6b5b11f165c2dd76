import fs from 'node:fs/promises';
import t, { type Test } from 'tap';
import type { BlockRef } from '../../protocol/types.js';
import { MiB, prng, readAt } from '../helpers/bigdata.js';
import { cachedBlockFile, damageFile } from '../helpers/corrupt.js';
import { eventually, mountDrive, remoteNode, startServerProcess, tempDir, type Drive } from '../helpers/drive.js';
import { serverBytes } from '../helpers/vfs.js';

/*
 * Corrupt cached blocks on a real FUSE mount (issue 9, finding 2): block files in the drive's
 * cache flipped or truncated on disk while it is stopped are (a) never served — the mount drops
 * them, fetches them again and reads right, also after the next remount; (b) never copied into a
 * new version — an append commits the right bytes, as the server's API shows; (c) with the server
 * down, EIO — never their bytes — while sound cached blocks still read.
 *
 * One `stratus serve` process and `stratus mount` processes, one at a time, on the same cache
 * folder and mountpoint; this process uses async fs only.
 */

const server = await startServerProcess(t);
const alice = await server.addUser('alice');
const cacheDir = await tempDir(t, 'integrity-cache');
const mountpoint = await tempDir(t, 'integrity-mnt');
const data = prng('integrity')(6 * MiB);
const tail = Buffer.from('appended after the damage\n');

const mount = () => mountDrive(t, server, alice.token, { cacheDir, mountpoint, drainTimeout: 30 });

/** Stops a drive (drained, unmounted) and waits until all it said on stderr has arrived. */
async function stopped(t: Test, d: Drive): Promise<string> {
  t.equal(await d.stop(), 0, 'the drive stops cleanly');
  return eventually('the last words of the drive', async () => d.stderr(), (s) => s.includes('stratus: unmounted'));
}

/** The head version's blocks as the server lists them. */
async function headBlocks(): Promise<{ id: string; version: number; blocks: BlockRef[] }> {
  const node = await remoteNode(alice.client, 'f.bin');
  const m = await alice.client.manifest(node!.id);
  return { id: node!.id, version: m.version, blocks: m.blocks };
}

/** How many lines of `stderr` name block `hash`. */
function mentions(stderr: string, hash: string): number {
  return stderr.split('\n').filter((l) => l.includes(hash)).length;
}

t.test('(a) flipped and truncated cached blocks: the mount reads the right bytes, also after a remount', async (t) => {
  const first = await mount();
  await fs.writeFile(first.p('f.bin'), data);
  await stopped(t, first);
  const { blocks } = await headBlocks();
  t.ok(blocks.length >= 4, `the file is ${blocks.length} blocks`);
  for (const b of blocks) await fs.access(cachedBlockFile(cacheDir, b.hash)); // the upload left them in the cache
  const [flipped, cut] = [blocks[0]!, blocks[1]!];
  await damageFile(cachedBlockFile(cacheDir, flipped.hash), 'flip');
  await damageFile(cachedBlockFile(cacheDir, cut.hash), 'truncate');

  const d = await mount();
  t.ok((await fs.readFile(d.p('f.bin'))).equals(data), 'the file reads right');
  const said = await stopped(t, d);
  for (const b of [flipped, cut]) t.equal(mentions(said, b.hash), 1, `the bad block ${b.hash.slice(0, 8)} is logged once`);

  const again = await mount();
  t.ok((await fs.readFile(again.p('f.bin'))).equals(data), 'after a remount: right');
  const saidAgain = await stopped(t, again);
  t.equal(blocks.filter((b) => mentions(saidAgain, b.hash) > 0).length, 0, 'and no block was found bad this time');
});

t.test('(b) an append to a file whose cached blocks are bad commits the right bytes', async (t) => {
  const { blocks } = await headBlocks();
  await damageFile(cachedBlockFile(cacheDir, blocks[0]!.hash), 'truncate');
  await damageFile(cachedBlockFile(cacheDir, blocks[2]!.hash), 'flip');

  const d = await mount();
  await fs.appendFile(d.p('f.bin'), tail);
  await stopped(t, d); // drains: the commit is on the server

  const head = await headBlocks();
  t.equal(head.version, 2, 'the append is version 2');
  const { bytes } = await serverBytes(alice.client, head.id);
  t.equal(bytes.length, data.length + tail.length, 'of the right size');
  t.ok(bytes.equals(Buffer.concat([data, tail])), 'the server holds the original bytes plus the appended line');
});

t.test('(c) with the server down a bad cached block is EIO, never its bytes; sound cached blocks still read', async (t) => {
  const want = Buffer.concat([data, tail]);
  const online = await mount();
  t.ok((await fs.readFile(online.p('f.bin'))).equals(want), 'read once online: every block of version 2 cached');
  await stopped(t, online);
  const { blocks } = await headBlocks();
  const offsets = blocks.map((_, i) => blocks.slice(0, i).reduce((sum, b) => sum + b.size, 0));
  await damageFile(cachedBlockFile(cacheDir, blocks[0]!.hash), 'flip');
  await damageFile(cachedBlockFile(cacheDir, blocks[1]!.hash), 'truncate');
  await server.stop();

  const d = await mount();
  const whole = await fs.readFile(d.p('f.bin')).then(
    (got) => `read ${got.length} bytes (${got.equals(want) ? 'right' : 'wrong'} ones)`,
    (err: NodeJS.ErrnoException) => err.code,
  );
  t.equal(whole, 'EIO', 'reading the file fails with EIO');
  for (const i of [0, 1]) {
    const at = offsets[i]! + Math.floor(blocks[i]!.size / 2);
    const got = await readAt(d.p('f.bin'), at, 4096).then(
      (b) => (b.equals(want.subarray(at, at + 4096)) ? 'right bytes' : 'wrong bytes'),
      (err: NodeJS.ErrnoException) => err.code,
    );
    t.equal(got, 'EIO', `4 KiB in the middle of bad block ${i}: EIO`);
  }
  const i = blocks.length - 2;
  const at = offsets[i]! + Math.floor(blocks[i]!.size / 2);
  t.ok((await readAt(d.p('f.bin'), at, 4096)).equals(want.subarray(at, at + 4096)), `4 KiB in the middle of sound block ${i}: right`);
  await stopped(t, d);
});
