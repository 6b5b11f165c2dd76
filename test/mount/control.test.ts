import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { askDrive, runningDrives } from '../../mount/control/client.js';
import { runtimeDir, socketPath } from '../../mount/control/runtime-dir.js';
import { ControlServer } from '../../mount/control/server.js';

/*
 * The control socket of a drive (mount/control/), in process: the router answers registered
 * requests with a result, streams progress before it, answers unknown or malformed requests
 * with one-line errors; the socket lives in a private runtime folder (0700) as a 0600 socket; a
 * live drive's socket is never taken over, a crashed one's is; the client refuses a runtime
 * folder others could write to; a client that goes away aborts its handler; close() lets an
 * answer in flight go out.
 */

const base = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-control-'));
process.env.XDG_RUNTIME_DIR = base;
t.teardown(() => fs.rm(base, { recursive: true, force: true }));

let n = 0;
/** A listening control server for a fresh (fake) mountpoint, closed at teardown. */
async function serverFor(t: { teardown(fn: () => unknown): void }): Promise<ControlServer> {
  const server = new ControlServer(path.join(base, `mnt-${++n}`));
  t.teardown(() => server.close(0));
  await server.listen();
  return server;
}

t.test('a request is routed to its handler; progress is streamed before the result', async (t) => {
  const server = await serverFor(t);
  server.handle('echo', (args) => ({ echoed: args }));
  server.handle('count', async (args, reply) => {
    for (let i = 1; i <= (args as { to: number }).to; i++) reply.progress({ i });
    return 'counted';
  });
  t.same(await askDrive(server.mountpoint, 'echo', { a: 1 }), { echoed: { a: 1 } }, 'the handler’s result');
  const seen: unknown[] = [];
  t.equal(await askDrive(server.mountpoint, 'count', { to: 3 }, { onProgress: (p) => seen.push(p) }), 'counted');
  t.same(seen, [{ i: 1 }, { i: 2 }, { i: 3 }], 'every progress message, in order, before the result');
});

t.test('unknown requests, bad lines and failing handlers get one-line errors', async (t) => {
  const server = await serverFor(t);
  server.handle('status', () => ({}));
  server.handle('boom', () => {
    throw new Error('it broke\nwith a second line');
  });
  await t.rejects(askDrive(server.mountpoint, 'nope'), { message: 'this drive does not answer "nope" (it answers: boom, status)' });
  await t.rejects(askDrive(server.mountpoint, 'boom'), { message: 'it broke' });
  const raw = await new Promise<string>((resolve) => {
    const s = net.connect(server.path, () => s.write('not json\n'));
    let out = '';
    s.setEncoding('utf8').on('data', (d: string) => (out += d));
    s.on('close', () => resolve(out));
  });
  t.match(JSON.parse(raw), { error: /not a control request/ }, 'a line that is not a request');
});

t.test('the runtime folder is 0700 and the socket 0600; a live socket is not taken over, a stale one is', async (t) => {
  const server = await serverFor(t);
  t.equal((await fs.stat(runtimeDir())).mode & 0o777, 0o700, 'runtime folder 0700');
  const st = await fs.lstat(server.path);
  t.ok(st.isSocket(), 'a socket');
  t.equal(st.mode & 0o777, 0o600, 'socket 0600');
  t.equal(server.path, socketPath(server.mountpoint), 'named after the mountpoint');

  await t.rejects(new ControlServer(server.mountpoint).listen(), { message: /another stratus process serves the drive at/ }, 'a second drive on the same mountpoint is refused');

  // A socket left by a process that was killed: replaced.
  const mountpoint = path.join(base, 'crashed');
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socketPath(mountpoint))}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((r) => child.stdout.once('data', r));
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  await t.rejects(askDrive(mountpoint, 'status'), { message: /stale control socket/ }, 'the client calls it stale');
  const again = new ControlServer(mountpoint);
  t.teardown(() => again.close(0));
  await again.listen();
  again.handle('status', () => 'fresh');
  t.equal(await askDrive(mountpoint, 'status'), 'fresh', 'the new drive serves in its place');
});

t.test('no drive: NoDriveError; a runtime folder others can enter is refused', async (t) => {
  await t.rejects(askDrive(path.join(base, 'nothing-here'), 'status'), { name: 'NoDriveError', stale: false, message: /^no stratus drive is mounted at / });
  const server = await serverFor(t);
  server.handle('status', () => ({ mountpoint: server.mountpoint }));
  t.same(
    (await runningDrives()).map((s) => s.mountpoint),
    [server.mountpoint],
    'runningDrives lists the drives that answer (stale sockets are skipped)',
  );
  await fs.chmod(runtimeDir(), 0o755);
  t.teardown(() => fs.chmod(runtimeDir(), 0o700));
  await t.rejects(askDrive(server.mountpoint, 'status'), { message: /is not a private folder of this user/ }, 'refused');
  t.same(await runningDrives(), [], 'nothing listed from it');
});

t.test('a client that goes away aborts its handler; close() lets an answer in flight go out', async (t) => {
  const server = await serverFor(t);
  let aborted!: () => void;
  let begun!: () => void;
  const sawAbort = new Promise<void>((r) => (aborted = r));
  const handling = new Promise<void>((r) => (begun = r));
  server.handle('long', (_args, reply) => {
    begun();
    return new Promise((resolve) => reply.signal.addEventListener('abort', () => (aborted(), resolve(null))));
  });
  const s = net.connect(server.path, () => s.write('{"request":"long"}\n'));
  s.on('error', () => undefined);
  await handling;
  s.destroy(); // the user's Ctrl-C on a command waiting for its answer
  await sawAbort;
  t.pass('the handler saw the client go');

  let release!: () => void;
  let started!: () => void;
  const inHandler = new Promise<void>((r) => (started = r));
  server.handle('slow', () => new Promise((r) => ((release = () => r('late but there')), started())));
  const answer = askDrive(server.mountpoint, 'slow');
  await inHandler;
  const closed = server.close();
  await t.rejects(fs.lstat(server.path), { code: 'ENOENT' }, 'the socket is gone at once');
  release();
  t.equal(await answer, 'late but there', 'the answer in flight still went out');
  await closed;
});
