import fs from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { MiB, pollUntil, sha256File, writeRandomFile } from '../helpers/bigdata.js';
import { mountDrive, remoteNode, sh, startServerProcess, tempDir } from '../helpers/drive.js';

/*
 * Invariant 5 across a crash: `kill -9` of a `stratus mount` process while it uploads a large
 * closed file. Started again on the same cache folder and mountpoint (the dead FUSE mount the
 * crash left there is cleaned up by the mount itself), it finishes the commit with no user
 * action: the server ends with the whole file as one version, byte for byte, and no staging file
 * is left behind.
 */

t.test('kill -9 during the upload of a 512 MiB file: the restarted mount commits it whole', async (t) => {
  const server = await startServerProcess(t);
  const alice = await server.addUser('alice');
  const local = await tempDir(t, 'crash-src');
  const size = 512 * MiB;
  const name = 'crash.bin';
  const file = path.join(local, name);
  const sha = await writeRandomFile(file, size, 'crash');

  const cacheDir = await tempDir(t, 'crash-cache');
  const mountpoint = await tempDir(t, 'crash-mnt');
  const a = await mountDrive(t, server, alice.token, { cacheDir, mountpoint });
  const before = await server.blockBytes();
  await sh(`cp ${file} ${a.p(name)}`, local);
  // cp returned: the file is closed, so it is queued on disk. Kill once the upload is well under
  // way (64 MiB of 512 on the server), so the restart has to resume it, not start it.
  const seen = await pollUntil(
    'the upload to get under way',
    60_000,
    async () => {
      const n = await server.blockBytes();
      return n >= before + 64 * MiB ? n : undefined;
    },
    20,
  );
  await a.kill();
  const atKill = await server.blockBytes();
  t.comment(`killed with ${seen - before}..${atKill - before} of ${size} bytes on the server`);
  const node = await remoteNode(alice.client, name);
  t.ok(node, 'the file exists on the server (created at open)');
  t.equal(node?.head_version, 0, 'killed before the commit landed');
  t.ok(atKill - before < size, 'killed before every block was uploaded');
  const dead = await fs.stat(mountpoint).then(
    () => 'alive',
    (err: NodeJS.ErrnoException) => err.code,
  );
  t.equal(dead, 'ENOTCONN', 'the crash left a dead FUSE mount behind');
  const staged = await fs.readdir(path.join(cacheDir, 'staging'));
  t.equal(staged.length, 1, 'the queued file is in the staging folder');

  // Same cache and mountpoint, no user action: the dead mount is cleaned up, the queue resumes.
  const started = Date.now();
  const b = await mountDrive(t, server, alice.token, { cacheDir, mountpoint });
  const committed = await pollUntil('the commit to land', 120_000, async () => {
    const n = await remoteNode(alice.client, name);
    return n && n.head_version >= 1 ? n : undefined;
  });
  t.comment(`committed ${Date.now() - started} ms after the restart`);
  t.equal(committed.head_version, 1, 'one version');
  t.equal(committed.size, size, 'of the whole size');
  t.equal((await fs.stat(b.p(name))).size, size, 'the restarted mount shows the whole file');
  t.equal(await b.stop(), 0, 'the restarted mount stops cleanly');
  t.match(b.stderr(), /unmounted/);
  t.same(await fs.readdir(path.join(cacheDir, 'staging')), [], 'no staging file left once drained');
  const stored = (await server.blockBytes()) - before;
  t.comment(`server block bytes: ${stored}`);
  t.ok(stored >= size && stored <= size + 4 * MiB, `the server stores the file once (${stored} bytes)`);

  const fresh = await mountDrive(t, server, alice.token);
  const read = await sha256File(fresh.p(name));
  t.equal(read.bytes, size);
  t.equal(read.hash, sha, 'a fresh mount reads the file byte for byte');
  t.equal((await remoteNode(alice.client, name))?.head_version, 1, 'still one version');
});
