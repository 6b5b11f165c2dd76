import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { askDrive } from '../../mount/control/client.js';
import type { PinProgress } from '../../mount/pins/pin-manager.js';
import type { NodeStatus } from '../../mount/sync-state/sync-state.js';
import type { StratusClient } from '../../protocol/client.js';
import { refused, stratusCli } from '../helpers/cli-run.js';
import { driveStatus, duBytes, eventually, mountDrive, remoteNode, remoteWrite, startServerProcess, tempDir } from '../helpers/drive.js';
import { posixCall } from '../helpers/posix-call.js';

/*
 * Pins ("available offline", DESIGN §7) on real drives against a real server: `stratus pin`
 * fetches everything under a folder and keeps it, so every file reads with the server gone —
 * also after the drive restarts; a pin over the cache bound is refused up front with the
 * numbers; `stratus unpin` makes the blocks ordinary cache entries, which later reads evict.
 * The CLI reaches the drive over its control socket (in a runtime folder of this test's own).
 */

const runtimeDir = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-pins-run-'));
process.env.XDG_RUNTIME_DIR = runtimeDir;
t.teardown(() => fs.rm(runtimeDir, { recursive: true, force: true }));

/** Makes folder `name` at the root of the user's tree on the server, holding `files` files of `size` random bytes; returns their bytes by name. */
async function remoteFolder(client: StratusClient, name: string, files: number, size: number): Promise<Map<string, Buffer>> {
  const root = await client.root();
  await client.create({ parent_id: root.id, name, kind: 'dir' });
  const out = new Map<string, Buffer>();
  const names = Array.from({ length: files }, (_, i) => `f${String(i).padStart(3, '0')}.bin`);
  for (let i = 0; i < names.length; i += 16) {
    await Promise.all(
      names.slice(i, i + 16).map(async (n) => {
        const bytes = randomBytes(size);
        await remoteWrite(client, `${name}/${n}`, bytes);
        out.set(n, bytes);
      }),
    );
  }
  return out;
}

async function state(file: string): Promise<string> {
  return posixCall('getxattr', file, 'user.stratus.state');
}

t.test('a pinned folder of 200 files reads with the server gone, also after a restart of the drive; unpin lets the cache evict it', async (t) => {
  const server = await startServerProcess(t);
  const { token, client } = await server.addUser('alice');
  const photos = await remoteFolder(client, 'photos', 200, 6 * 1024);
  await remoteFolder(client, 'big', 10, 250 * 1024);
  const cacheDir = await tempDir(t, 'pin-cache');
  const mountpoint = await tempDir(t, 'pin-mnt');
  let drive = await mountDrive(t, server, token, { cacheDir, mountpoint, cacheSize: '2MB' });
  await eventually('the drive to list photos', () => fs.readdir(drive.p('photos')), (names) => names.length === 200);

  // What the user gets wrong: one line saying why.
  refused(t, await stratusCli(['pin', os.tmpdir()]), /is not on a mounted Stratus drive/, 'pin of a path not on a drive');
  refused(t, await stratusCli(['pin', drive.p('nope')]), /nope: no such file or folder/, 'pin of a missing path');
  refused(t, await stratusCli(['unpin', drive.p('photos')]), /photos is not pinned/, 'unpin of what is not pinned');

  const pinned = await stratusCli(['pin', drive.p('photos')]);
  t.equal(pinned.code, 0, `pin exits 0 (${pinned.stderr.trim()})`);
  t.match(pinned.stdout, /^pinned .*photos: 200 file\(s\), 1\.2MB kept offline/, 'pin says what it keeps');
  t.equal(await state(drive.p('photos', 'f000.bin')), 'pinned', 'a file under the pin reads user.stratus.state = pinned');
  t.equal(await state(drive.p('photos')), 'pinned', 'so does the folder');
  refused(t, await stratusCli(['unpin', drive.p('photos', 'f000.bin')]), new RegExp(`f000\\.bin is not pinned itself but as part of ${drive.p('photos')}: unpin that`), 'unpin of a file under a pinned folder');

  // Over the bound (2 MB): 1.2 MB pinned + 2.4 MB more is refused before anything is fetched, with the numbers.
  refused(t, await stratusCli(['pin', drive.p('big')]), /cannot pin .*big: its 10 file\(s\) take 2\.4MB and the other pins 1\.2MB more, over the cache size of 2MB/, 'a pin over the cache size');
  t.equal(await state(drive.p('big', 'f000.bin')), 'online-only', 'nothing of the refused pin was fetched');

  refused(t, await stratusCli(['status', drive.p('photos', 'nope.bin')]), /photos\/nope\.bin: no such file or folder/, 'status of a missing file on a drive');
  const folder = await stratusCli(['status', drive.p('photos')]);
  t.match(folder.stdout, /photos: pinned \(folder\)\n {2}200 file\(s\): 200 pinned\n/, 'stratus status FOLDER: counts per state');

  // Restart the drive, then kill the server: every pinned file comes from the cache.
  t.equal(await drive.stop(), 0, 'the drive stops cleanly');
  drive = await mountDrive(t, server, token, { cacheDir, mountpoint, cacheSize: '2MB' });
  await server.kill();
  let same = 0;
  for (const [name, bytes] of photos) if ((await fs.readFile(drive.p('photos', name))).equals(bytes)) same++;
  t.equal(same, 200, 'after a restart of the drive and with the server killed, all 200 pinned files read their bytes');
  t.equal(await state(drive.p('photos', 'f199.bin')), 'pinned', 'the pin survived the restart');

  // Unpin, then read more than the cache holds: the old pin's blocks are evicted to make room.
  const unpinned = await stratusCli(['unpin', drive.p('photos')]);
  t.equal(unpinned.code, 0, `unpin exits 0 (${unpinned.stderr.trim()})`);
  t.match(unpinned.stdout, /^unpinned .*photos: 200 file\(s\), 1\.2MB are ordinary cache entries again/, 'unpin says what it released');
  t.equal(await state(drive.p('photos', 'f000.bin')), 'cached', 'an unpinned file is an ordinary cached one');
  const server2 = await startServerProcess(t, { dataDir: server.dataDir, listen: server.listen });
  await eventually('the drive to be online again', () => driveStatus(drive.mountpoint), (s) => s.online, 30_000);
  t.ok(server2.url, 'server back');
  for (let i = 0; i < 10; i++) await fs.readFile(drive.p('big', `f${String(i).padStart(3, '0')}.bin`));
  const evicted = await eventually(
    'photos blocks to be evicted',
    async () => ((JSON.parse((await stratusCli(['status', drive.p('photos'), '--json'])).stdout) as NodeStatus & { states: Record<string, number> }).states['online-only'] ?? 0),
    (n) => n > 0,
  );
  t.ok(evicted > 0, `reading 2.4 MB through a 2 MB cache evicted ${evicted} formerly pinned file(s)`);
  t.ok((await duBytes(path.join(cacheDir, 'blocks'))) <= 2 * 1024 * 1024, 'the cache folder stays within --cache-size');
});

t.test('a pin streams its progress over the control socket and keeps a file that arrives later', async (t) => {
  const server = await startServerProcess(t);
  const { token, client } = await server.addUser('bob');
  await remoteFolder(client, 'docs', 20, 64 * 1024);
  const drive = await mountDrive(t, server, token, { cacheSize: '64MB' });
  await eventually('the drive to list docs', () => fs.readdir(drive.p('docs')), (names) => names.length === 20);

  const steps: PinProgress[] = [];
  const result = (await askDrive(drive.mountpoint, 'pin', { path: '/docs' }, { onProgress: (p) => steps.push(p as PinProgress) })) as { files: number; bytes: number };
  t.match(result, { files: 20, bytes: 20 * 64 * 1024 }, 'the result: files and bytes kept');
  t.ok(steps.length >= 2, `${steps.length} progress messages`);
  t.match(steps.at(-1), { files: 20, totalFiles: 20, bytes: 20 * 64 * 1024, totalBytes: 20 * 64 * 1024 }, 'the last one: everything fetched');

  // Another device adds a file: the drive fetches and keeps it without being asked.
  const late = randomBytes(100 * 1024);
  await remoteWrite(client, 'docs/late.bin', late);
  await eventually('the new file (its committed version) under the pin to be kept', async () => [(await fs.stat(drive.p('docs', 'late.bin'))).size, await state(drive.p('docs', 'late.bin'))], ([size, s]) => size === late.length && s === 'pinned');
  await server.kill();
  t.ok((await fs.readFile(drive.p('docs', 'late.bin'))).equals(late), 'a file that arrived under the pin later reads with the server gone');
});

t.test('user.stratus.state across a save, an upload held in flight, a queued save and a conflict; other attributes stay cheap refusals', async (t) => {
  const { startProxy } = await import('../helpers/proxy.js');
  const server = await startServerProcess(t);
  const { token, client } = await server.addUser('carol');
  const proxy = await startProxy(t, server.url);
  const drive = await mountDrive(t, server, token, { serverUrl: proxy.url, device: 'laptop' });

  // A save: pending or uploading while the sender has it, then cached (its blocks stay in the cache).
  await fs.writeFile(drive.p('a.txt'), 'hello');
  await eventually('a.txt to be synced', () => state(drive.p('a.txt')), (s) => s === 'cached');
  t.pass('a saved file becomes cached once committed');
  t.equal(await state(drive.p('')), 'synced', 'the root folder: synced');
  const status = JSON.parse(await posixCall('getxattr', drive.p('a.txt'), 'user.stratus.status')) as NodeStatus;
  t.match(status, { path: '/a.txt', kind: 'file', state: 'cached', size: 5, version: 1, cachedBytes: 5, pinned: false }, 'user.stratus.status: the numbers as JSON');
  const cli = await stratusCli(['status', drive.p('a.txt')]);
  t.match(cli.stdout, /a\.txt: cached\n {2}5B, version 1, 5B cached\n/, 'stratus status FILE');

  // An upload held in flight: the network swallows it.
  proxy.pause('blackhole');
  await fs.writeFile(drive.p('held.txt'), 'held');
  await eventually('held.txt to be uploading', () => state(drive.p('held.txt')), (s) => s === 'uploading');
  t.pass('a file the sender is sending reads uploading');

  // A queued save the server refuses to take now (connections reset): pending between retries.
  proxy.resume(); // resets the held request
  proxy.pause('refuse');
  await eventually('held.txt to be pending', () => state(drive.p('held.txt')), (s) => s === 'pending');
  t.pass('a file whose save waits in the log reads pending');

  // A conflict: the server's head moves while this drive's edit of a.txt is queued.
  await fs.writeFile(drive.p('a.txt'), 'mine');
  const node = (await remoteNode(client, 'a.txt'))!;
  const theirs = Buffer.from('theirs');
  const { blake3Hex } = await import('../../protocol/hash.js');
  await client.putBlock(blake3Hex(theirs), theirs);
  await client.commit(node.id, { base_version: node.head_version, blocks: [{ hash: blake3Hex(theirs), size: theirs.length }], size: theirs.length });
  proxy.resume();
  const copy = await eventually('a conflicted copy of a.txt', () => fs.readdir(drive.mountpoint), (names) => names.some((n) => /^a \(conflicted copy from laptop .*\)\.txt$/.test(n)));
  const copyName = copy.find((n) => n.startsWith('a (conflicted'))!;
  t.equal(await state(drive.p(copyName)), 'conflict', 'the conflicted copy reads conflict');
  t.equal(await state(drive.p('a.txt')), 'conflict', 'the file whose save became a conflicted copy reads conflict');
  await eventually('held.txt to be synced', () => state(drive.p('held.txt')), (s) => s === 'cached');
  t.pass('the held upload finished once the network came back');

  // Everything else: no data, nothing listed, nothing settable.
  await t.rejects(posixCall('getxattr', drive.p('a.txt'), 'user.stratus.nope'), { code: 'ENODATA' }, 'another user.stratus.* name: ENODATA');
  // ENOTSUP, not ENODATA: `ls -l` then stops asking for each entry (mount/vfs/xattrs.ts).
  await t.rejects(posixCall('getxattr', drive.p('a.txt'), 'user.other'), { code: /^(ENOTSUP|EOPNOTSUPP)$/ }, 'another user.* name: ENOTSUP');
  await t.rejects(posixCall('getxattr', drive.p('a.txt'), 'security.selinux'), { code: /^(ENOTSUP|EOPNOTSUPP)$/ }, 'a security label: ENOTSUP');
  await t.rejects(posixCall('getxattr', drive.p('a.txt'), 'system.posix_acl_access'), { code: /^(ENOTSUP|EOPNOTSUPP)$/ }, 'an ACL: ENOTSUP');
  t.equal(await posixCall('listxattr', drive.p('a.txt')), '', 'listxattr lists nothing (nothing for cp -a to copy off the drive)');
  await t.rejects(posixCall('setxattr', drive.p('a.txt'), 'user.stratus.state', 'synced'), { code: /^(ENOTSUP|EOPNOTSUPP)$/ }, 'setting user.stratus.state: ENOTSUP');
  await t.rejects(posixCall('removexattr', drive.p('a.txt'), 'user.stratus.state'), { code: /^(ENOTSUP|EOPNOTSUPP)$/ }, 'removing it: ENOTSUP');
});
