import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import type { MountStatus } from '../../mount/status.js';
import { StratusClient } from '../../protocol/client.js';
import { commitRandomBlocks } from '../helpers/backend.js';
import { driveStatus, readStatus } from '../../mount/control/client.js';
import { socketPath } from '../../mount/control/runtime-dir.js';
import { bin, eventually, mountDrive, remoteNode, run, startServerProcess, tempDir } from '../helpers/drive.js';

/*
 * `stratus status` on real mounts (DESIGN §9), and a mount that starts while its server is down:
 * the drive reports whether it is connected, what is pending and when it last synced; with the
 * server gone it says so; it starts from its saved tree without the server, and catches up when
 * the server is back. The status is asked over the drive's control socket, polled until as
 * expected (with a timeout).
 */

// A runtime folder of our own, so other tests' drives are not listed here (inherited by the child processes).
const runtimeDir = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-status-run-'));
process.env.XDG_RUNTIME_DIR = runtimeDir;
t.teardown(() => fs.rm(runtimeDir, { recursive: true, force: true }));

/** Resolves with the mount's status (asked over its control socket) once `pred` holds for it. */
function statusUntil(mountpoint: string, pred: (s: MountStatus) => boolean, ms = 20_000): Promise<MountStatus> {
  return eventually(`the status of ${mountpoint} to be as expected`, () => driveStatus(mountpoint), pred, ms);
}

async function status(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return run(process.execPath, [bin, 'status', ...args]).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (e: { code: number; stdout: string; stderr: string }) => e,
  );
}

/** `stratus serve` on a given data folder and address (to bring a stopped server back on its port). */
async function serveAgain(t: { teardown(fn: () => unknown): void }, dataDir: string, url: string): Promise<void> {
  const child = spawn(process.execPath, [bin, 'serve', '--data', dataDir, '--listen', new URL(url).host], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  });
  let err = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve not ready: ${err}`)), 30_000);
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      err += s;
      if (/serving on/.test(err)) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then(() => reject(new Error(`serve exited: ${err}`)));
  });
}

t.test('stratus status shows a connected drive, then one whose server is gone', async (t) => {
  const server = await startServerProcess(t);
  const { token } = await server.addUser('alice');
  const drive = await mountDrive(t, server, token);

  const up = await statusUntil(drive.mountpoint, (s) => s.connected && s.lastSyncAt !== null);
  t.equal(up.pid, drive.child.pid, 'the status is the mount process’s');

  const text = await status([drive.mountpoint]);
  t.equal(text.code, 0, 'exit 0');
  t.match(text.stdout, new RegExp(`${drive.mountpoint}: connected to ${server.url}`), 'says connected, to which server');
  t.match(text.stdout, /pending: 0 commit\(s\), 0B/, 'nothing pending');
  t.match(text.stdout, /\n {2}last sync \d{4}-/, 'last sync time');
  t.notMatch(text.stdout, /cursor/, 'no cursor: it is opaque, nothing to read in it');

  const json = await status([drive.mountpoint, '--json']);
  const parsed = JSON.parse(json.stdout) as MountStatus;
  t.match(parsed, { mountpoint: drive.mountpoint, connected: true, online: true, pendingCommits: 0, pendingBytes: 0, user: 'alice' }, '--json: the same as an object');

  const all = JSON.parse((await status(['--json'])).stdout) as MountStatus[];
  t.same(
    all.map((s) => s.mountpoint),
    [drive.mountpoint],
    'without MOUNTPOINT: every mounted drive',
  );

  await fs.writeFile(drive.p('note.txt'), 'written while connected\n');
  const api = new StratusClient({ server: server.url, token });
  t.teardown(() => api.close());
  // close(2) returns before the drive hears of it (RELEASE comes after): wait for the version itself.
  await eventually('note.txt committed', () => remoteNode(api, 'note.txt'), (n) => n?.head_version === 1);
  await statusUntil(drive.mountpoint, (s) => s.pendingCommits === 0);
  // The drive's own changes come back to it as hints: its cursor reaches the server's new head.
  const head = (await api.changesHead()).cursor;
  t.not(head, up.cursor, 'the server\'s head moved');
  await statusUntil(drive.mountpoint, (s) => s.cursor === head);

  await server.stop();
  const down = await statusUntil(drive.mountpoint, (s) => !s.connected && !s.online);
  t.ok(down.lastError, `the reason is kept: ${down.lastError}`);
  const after = await status([drive.mountpoint]);
  t.equal(after.code, 0, 'still exit 0: the drive runs');
  t.match(after.stdout, /not connected to http/, 'says not connected');
  t.equal((await fs.stat(drive.p('note.txt'))).size, 24, 'the drive still shows what it has');

  t.equal(await drive.stop(), 0, 'the drive stops cleanly without its server');
  t.equal(await readStatus(drive.mountpoint), undefined, 'no status once unmounted');
  await t.rejects(fs.lstat(socketPath(drive.mountpoint)), { code: 'ENOENT' }, 'its control socket is removed at unmount');
  const gone = await status([drive.mountpoint]);
  t.equal(gone.code, 1, 'a stopped drive: exit 1');
  t.match(gone.stderr, /^stratus: no stratus drive is mounted at \S+\n$/, 'in one line');
});

t.test('a drive starts from its saved tree while the server is down, and catches up when it is back', async (t) => {
  const server = await startServerProcess(t);
  const alice = await server.addUser('alice');
  const cacheDir = await tempDir(t, 'cache');
  const first = await mountDrive(t, server, alice.token, { cacheDir });
  await fs.mkdir(first.p('docs'));
  await fs.writeFile(first.p('docs', 'kept.txt'), 'saved before the outage\n');
  t.equal(await first.stop(), 0, 'first mount drained and stopped');
  await server.stop();

  const second = await mountDrive(t, server, alice.token, { cacheDir });
  t.match(second.stderr(), /server unreachable .* started from the saved tree/, 'it says it started offline');
  t.same(await fs.readdir(second.mountpoint), ['docs'], 'the saved tree is there');
  t.equal((await fs.stat(second.p('docs', 'kept.txt'))).size, 24, 'with its files');
  const offline = await statusUntil(second.mountpoint, () => true);
  t.match(offline, { connected: false, online: false, startedOffline: true }, 'status: not connected, started offline');

  // Back on the same address: the drive connects by itself, catches up, and sees another device's change.
  await serveAgain(t, server.dataDir, server.url);
  const back = await statusUntil(second.mountpoint, (s) => s.connected && s.lastSyncAt !== null);
  const res = await run(process.execPath, [bin, 'status', second.mountpoint, '--json']);
  t.match(JSON.parse(res.stdout), { connected: true, online: true }, 'status: connected again');
  const laptop = new StratusClient({ server: server.url, token: alice.token });
  t.teardown(() => laptop.close());
  await laptop.create({ parent_id: (await laptop.root()).id, name: 'from-laptop', kind: 'dir' });
  const { cursor } = await laptop.changesHead();
  t.not(cursor, back.cursor, 'the server\'s head moved');
  await statusUntil(second.mountpoint, (s) => s.cursor === cursor);
  t.same((await fs.readdir(second.mountpoint)).sort(), ['docs', 'from-laptop'], 'another device’s change shows up through the hint');

  // A remote edit of a file whose attributes the kernel holds (for 1 s after this stat): the mount
  // makes the kernel take the new size at once (kernel refresh), not at attr_timeout.
  t.equal((await fs.stat(second.p('docs', 'kept.txt'))).size, 24, 'the kernel holds the old size');
  const kept = (await laptop.allChildren((await laptop.allChildren((await laptop.root()).id)).find((n) => n.name === 'docs')!.id))[0]!;
  await commitRandomBlocks(laptop, kept.id, kept.head_version, [100]);
  const edited = (await laptop.changesHead()).cursor;
  await statusUntil(second.mountpoint, (s) => s.cursor === edited);
  t.equal((await fs.stat(second.p('docs', 'kept.txt'))).size, 100, 'the new size right after the pull');
  t.equal((await fs.readFile(second.p('docs', 'kept.txt'))).length, 100, 'and the new content');
});

t.test('no saved tree and no server: the mount fails with one line', async (t) => {
  const mountpoint = await tempDir(t, 'mnt');
  const cacheDir = await tempDir(t, 'cache');
  const res = await run(process.execPath, [bin, 'mount', mountpoint, '--server', 'http://127.0.0.1:9', '--token', 'stx_x', '--cache', cacheDir]).then(
    () => ({ code: 0, stderr: '' }),
    (e: { code: number; stderr: string }) => e,
  );
  t.not(res.code, 0, 'exits non-zero');
  t.match(res.stderr, /^stratus: cannot reach the server at http:\/\/127\.0\.0\.1:9 \(.*\) and the cache folder .* holds no saved drive to start from\n$/, 'says why, in one line');
});

t.test('stratus status on a path with no drive: exit 1 and one line', async (t) => {
  const dir = await tempDir(t, 'nodrive');
  const res = await status([dir]);
  t.equal(res.code, 1, 'exit 1');
  t.equal(res.stderr, `stratus: no stratus drive is mounted at ${dir}\n`, 'one line');
  t.equal(res.stdout, '', 'nothing on stdout');

  // A control socket whose process is gone (a crash: nobody removed it): stale, not mounted.
  const stale = path.join(dir, 'sub');
  await fs.mkdir(path.dirname(socketPath(stale)), { recursive: true, mode: 0o700 });
  const crashed = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socketPath(stale))}, () => console.log('listening'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve) => crashed.stdout.once('data', resolve));
  crashed.kill('SIGKILL');
  await new Promise((r) => crashed.once('exit', r));
  t.teardown(() => fs.rm(socketPath(stale), { force: true }));
  t.ok((await fs.lstat(socketPath(stale))).isSocket(), 'the crashed process left its socket');
  const res2 = await status([stale]);
  t.equal(res2.code, 1, 'stale socket: exit 1');
  t.match(res2.stderr, /^stratus: no stratus drive is mounted at \S+ \(stale control socket of a drive that is gone\)\n$/, 'says stale, in one line');
});
