import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import t from 'tap';
import { MiB, prng } from '../helpers/bigdata.js';
import { driveStatus, eventually, mountDrive, remoteNode, remoteTree, remoteWrite, startServerProcess, treeValue } from '../helpers/drive.js';
import { fsOp, opBytes, under, type FsOp, type OpResult } from '../helpers/fs-ops.js';

/*
 * A server that accepts connections but never answers (kill -STOP of its process: the kernel still
 * completes TCP handshakes and takes the bytes of requests; nothing comes back). The drive's
 * metadata is local-first: creating a file (write + close), mkdir, rename, unlink, rmdir, chmod,
 * utimens, stat, ls and a read of a cached file all complete while the server stays stopped, at
 * local speed; only what needs the server — opening a file whose content was never fetched —
 * fails, with EIO within the drive's bound (10 s; asserted under 15 s). Once the server is
 * resumed the drive drains, and the server has everything done during the stall.
 *
 * Each call is made by a child process with a deadline (test/helpers/fs-ops.ts): a call into a hung
 * mount must fail this test, not hang it. The server is always resumed (SIGCONT) before the test
 * ends, also when it fails.
 */

/** Generous: the goal is local speed, this only keeps a hang from blocking the test. */
const OP_TIMEOUT_MS = 5_000;
/** The drive's documented bound for a read that needs a server that does not answer is 10 s. */
const EIO_BOUND_MS = 15_000;
const MTIME = Date.UTC(2001, 8, 9, 1, 46, 40);

t.test('server stopped (SIGSTOP): local metadata ops complete at once, an uncached read fails with EIO in bounded time; all reaches the server after SIGCONT', async (t) => {
  const server = await startServerProcess(t);
  const user = await server.addUser('stella');
  const laptop = await server.addDevice('stella', 'laptop');
  const drive = await mountDrive(t, server, laptop.token, { device: 'laptop', drainTimeout: 30 });
  const dir = drive.p('work');
  const small = (name: string) => opBytes(`stall-${name}`, 100);

  // Before the stall: a folder of files made through the mount, two more by another device (the
  // API): cached.bin is then read whole through the mount, never.bin is never opened here.
  await fs.mkdir(dir);
  await fs.mkdir(drive.p('work', 'empty'));
  for (const name of ['a.txt', 'b.txt', 'c.txt', 'gone.txt']) await fs.writeFile(drive.p('work', name), small(name));
  const cached = prng('stall-cached')(MiB + 12345);
  const never = prng('stall-never')(MiB);
  await remoteWrite(user.client, 'work/cached.bin', cached);
  await remoteWrite(user.client, 'work/never.bin', never);
  await eventually('the drive to list both files made elsewhere', () => fs.readdir(dir), (names) => names.includes('cached.bin') && names.includes('never.bin'));
  t.ok((await fs.readFile(drive.p('work', 'cached.bin'))).equals(cached), 'cached.bin reads whole through the mount (its blocks now cached)');
  t.same((await fs.readdir(dir)).sort(), ['a.txt', 'b.txt', 'c.txt', 'cached.bin', 'empty', 'gone.txt', 'never.bin'], 'the folder lists');
  await eventually('the drive to have committed everything', () => driveStatus(drive.mountpoint), (s) => s.connected && s.pendingCommits === 0);

  const pid = server.child.pid!;
  let stopped = false;
  const resume = () => {
    if (stopped) process.kill(pid, 'SIGCONT');
    stopped = false;
  };
  // Teardowns run last-registered first: this one before the server's own stop.
  t.teardown(resume);
  const stallStarted = Date.now();
  process.kill(pid, 'SIGSTOP');
  stopped = true;
  try {
    const local: Array<{ op: FsOp; what: string; check?: (r: OpResult) => void }> = [
      { op: { op: 'write', path: 'work/new.txt', size: 100, seed: 'stall-new.txt' }, what: 'create a file (open, write, close)' },
      { op: { op: 'mkdir', path: 'work/newdir' }, what: 'mkdir' },
      { op: { op: 'rename', from: 'work/a.txt', to: 'work/renamed.txt' }, what: 'rename a file' },
      { op: { op: 'unlink', path: 'work/gone.txt' }, what: 'unlink a file' },
      { op: { op: 'rmdir', path: 'work/empty' }, what: 'rmdir' },
      { op: { op: 'chmod', path: 'work/b.txt', mode: 0o600 }, what: 'chmod' },
      { op: { op: 'utimes', path: 'work/c.txt', atimeMs: MTIME, mtimeMs: MTIME }, what: 'utimens (touch)' },
      {
        op: { op: 'stat', path: 'work/b.txt' },
        what: 'stat',
        check: (r) => t.match(r.value, { type: 'file', size: 100, mode: 0o600 }, 'stat shows the file with its new mode'),
      },
      {
        op: { op: 'readdir', path: 'work' },
        what: 'ls of the folder',
        check: (r) => t.same(r.value, ['b.txt', 'c.txt', 'cached.bin', 'never.bin', 'new.txt', 'newdir', 'renamed.txt'], 'ls shows every change'),
      },
      {
        op: { op: 'read', path: 'work/cached.bin' },
        what: 'read of the cached file',
        check: (r) => t.same(r.value, { size: cached.length, sha256: createHash('sha256').update(cached).digest('hex') }, 'the cached file reads whole'),
      },
    ];
    for (const { op, what, check } of local) {
      const r = await fsOp(t, under(drive.mountpoint, op), OP_TIMEOUT_MS);
      t.comment(`${what}: ${r.outcome} in ${r.ms} ms`);
      t.equal(r.outcome, 'ok', `${what} completes while the server is stopped (${r.outcome === 'timeout' ? `no answer in ${r.ms} ms` : `${r.ms} ms`})`);
      if (r.outcome === 'ok') check?.(r);
    }

    const r = await fsOp(t, under(drive.mountpoint, { op: 'read', path: 'work/never.bin' }), EIO_BOUND_MS);
    t.comment(`open + read of a file never read: ${r.outcome} in ${r.ms} ms`);
    t.equal(r.outcome, 'EIO', `open + read of a file never read fails with EIO (${r.outcome === 'timeout' ? `no answer in ${r.ms} ms` : `${r.outcome} in ${r.ms} ms`})`);
    t.ok(r.outcome !== 'timeout' && r.ms < EIO_BOUND_MS, `and within ${EIO_BOUND_MS / 1000} s (${r.ms} ms)`);
  } finally {
    resume();
    t.comment(`the server was stopped for ${Date.now() - stallStarted} ms`);
  }

  const resumed = Date.now();
  t.equal(await drive.stop(), 0, 'resumed, the drive drains everything and stops with exit 0');
  t.comment(`drained and stopped ${Date.now() - resumed} ms after SIGCONT`);
  t.same(
    await remoteTree(user.client, 'work'),
    {
      'b.txt': treeValue(small('b.txt')),
      'c.txt': treeValue(small('c.txt')),
      'cached.bin': treeValue(cached),
      'never.bin': treeValue(never),
      'new.txt': treeValue(opBytes('stall-new.txt', 100)),
      'newdir/': '<dir>',
      'renamed.txt': treeValue(small('a.txt')),
    },
    'the server has the created file with its bytes, the folder, the rename; the unlinked file and removed folder are gone',
  );
  t.equal(((await remoteNode(user.client, 'work/b.txt'))?.mode ?? 0) & 0o7777, 0o600, 'the server has the mode set by chmod');
  t.equal((await remoteNode(user.client, 'work/c.txt'))?.mtime, MTIME, 'the server has the mtime set by touch');
});
