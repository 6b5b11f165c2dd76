import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { StratusClient } from '../../protocol/client.js';
import { bin, driveStatus, eventually, forceUnmount, mountDrive, remoteNode, run, startServerProcess, tempDir } from '../helpers/drive.js';

/*
 * The first command a new user runs (`npm start` = `stratus up`): an embedded server, a local
 * user and the drive in one process tree; `stratus unmount` or Ctrl-C ends it cleanly (the
 * embedded server outlives the drain), and what was written is there at the next `up`. A drive
 * that stops with commits still pending exits 3, its queue kept on disk. Plus the one-line
 * failures of `stratus mount`.
 */

/** The documented exit code of a drive that stopped with commits still pending (README, --help). */
const EXIT_PENDING = 3;

interface UpOptions {
  /** Its own process group, as a shell runs a foreground job (so `-pid` signals the whole job). */
  detached?: boolean;
  /** HOST:PORT of the embedded server (default: a free port; a drive's cache belongs to one address). */
  listen?: string;
}

function startUp(t: { teardown(fn: () => unknown): void }, mountpoint: string, dataDir: string, cacheDir: string, opts: UpOptions = {}) {
  const child = spawn(process.execPath, [bin, 'up', mountpoint, '--data', dataDir, '--listen', opts.listen ?? '127.0.0.1:0', '--cache', cacheDir], {
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: opts.detached ?? false,
  });
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => {
    err += s;
    if (process.env.STRATUS_TEST_VERBOSE) process.stderr.write(s);
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    await forceUnmount(mountpoint);
  });
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`up not ready in 30 s: ${err}`)), 30_000);
    child.stderr.on('data', () => {
      if (!/drive ready at/.test(err)) return;
      clearTimeout(timer);
      resolve();
    });
    void exited.then((code) => reject(new Error(`up exited (${code}) before ready: ${err}`)));
  });
  /** HOST:PORT the embedded server listens on (once ready). */
  const listen = () => new URL(/serving on (\S+)/.exec(err)![1]!).host;
  return { child, ready, exited, stderr: () => err, listen };
}

/** The process `pid` exists and has not exited (a zombie nobody reaped yet counts as gone). */
async function running(pid: number): Promise<boolean> {
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** The pid of the `stratus serve` child of process `parent` (read from /proc, whatever `up` prints). */
async function embeddedServer(parent: number): Promise<number> {
  for (const name of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await fs.readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid !== parent) continue;
    const cmdline = (await fs.readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (cmdline.includes('serve')) return Number(name);
  }
  throw new Error(`no stratus serve child of pid ${parent}`);
}

/** The head content of a (small) file at a path of the user's tree, straight from the server's API. */
async function remoteText(client: StratusClient, p: string): Promise<string | undefined> {
  const node = await remoteNode(client, p);
  if (!node || node.head_version === 0) return undefined;
  const manifest = await client.manifest(node.id);
  return Buffer.concat(await Promise.all(manifest.blocks.map((b) => client.getBlock(b.hash)))).toString('utf8');
}

/** The folder is a plain folder again, not a mountpoint (same device as its parent). */
async function notMounted(dir: string): Promise<boolean> {
  return (await fs.stat(dir)).dev === (await fs.stat(path.dirname(dir))).dev;
}

t.test('stratus up gives a working drive; stratus unmount drains it and stops the embedded server', async (t) => {
  const base = await tempDir(t, 'up');
  const mountpoint = path.join(base, 'Stratus'); // does not exist yet: up creates it
  const dataDir = path.join(base, 'data');
  const cacheDir = path.join(base, 'cache');

  const first = startUp(t, mountpoint, dataDir, cacheDir);
  await first.ready;
  await fs.mkdir(path.join(mountpoint, 'docs'));
  await fs.writeFile(path.join(mountpoint, 'docs', 'hello.txt'), 'hello from up\n');
  t.equal(await fs.readFile(path.join(mountpoint, 'docs', 'hello.txt'), 'utf8'), 'hello from up\n', 'the drive reads back what was written');
  const creds = JSON.parse(await fs.readFile(path.join(dataDir, 'local-user.json'), 'utf8')) as { user: string; token: string };
  t.match(creds.token, /^stx_/, 'the local user token is kept in the data folder');
  t.equal((await fs.stat(path.join(dataDir, 'local-user.json'))).mode & 0o777, 0o600, 'readable by its owner only');

  await run(process.execPath, [bin, 'unmount', mountpoint]);
  t.equal(await first.exited, 0, 'up exits 0 after stratus unmount');
  t.match(first.stderr(), /unmounted/, 'it says it unmounted');
  t.match(first.stderr(), /embedded server exited \(code 0\)/, 'the embedded server was stopped cleanly');
  t.same(await fs.readdir(mountpoint), [], 'the mountpoint is a plain empty folder again');

  // Same data folder, fresh cache: the content came from the server, not from a local leftover.
  const second = startUp(t, mountpoint, dataDir, path.join(base, 'cache2'));
  await second.ready;
  t.equal(await fs.readFile(path.join(mountpoint, 'docs', 'hello.txt'), 'utf8'), 'hello from up\n', 'the next up shows the file (committed at the first shutdown)');
  t.equal(JSON.parse(await fs.readFile(path.join(dataDir, 'local-user.json'), 'utf8')).token, creds.token, 'the same local user is reused');
});

t.test('Ctrl-C on up (SIGINT to its whole process group, as a terminal sends it) commits what is pending before the embedded server stops', async (t) => {
  const base = await tempDir(t, 'up-ctrl-c');
  const mountpoint = path.join(base, 'Stratus');
  const dataDir = path.join(base, 'data');
  const up = startUp(t, mountpoint, dataDir, path.join(base, 'cache'), { detached: true });
  await up.ready;
  const server = await embeddedServer(up.child.pid!);

  const content = randomBytes(700_000);
  const file = await fs.open(path.join(mountpoint, 'late.bin'), 'w');
  await file.writeFile(content);
  // The server is paused while the file is closed: its commit cannot land before the Ctrl-C.
  process.kill(server, 'SIGSTOP');
  try {
    await file.close();
    await eventually('the closed file queued', () => driveStatus(mountpoint), (s) => s.pendingCommits === 1);
    process.kill(-up.child.pid!, 'SIGINT'); // the terminal's Ctrl-C: every process of the foreground job
  } finally {
    process.kill(server, 'SIGCONT');
  }
  t.equal(await up.exited, 0, 'up exits 0: everything was committed');
  const err = up.stderr();
  t.match(err, /SIGINT: waiting for 1 pending commit/, 'it says what it waits for');
  t.ok(err.indexOf('unmounted') >= 0 && err.indexOf('unmounted') < err.indexOf('embedded server exited (code 0)'), 'the server stopped after the drive unmounted', { stderr: err });
  t.notOk(await running(server), 'the embedded server is gone when up is');
  t.ok(await notMounted(mountpoint), 'the mount is gone');
  t.same(await fs.readdir(mountpoint), [], 'the mountpoint is a plain empty folder again');

  // Same data folder, fresh cache: the bytes came from the server.
  const next = startUp(t, mountpoint, dataDir, path.join(base, 'cache2'));
  await next.ready;
  t.ok((await fs.readFile(path.join(mountpoint, 'late.bin'))).equals(content), 'the next up has the file that was pending at Ctrl-C');
});

// Proves a second Ctrl-C mid-drain (the server cannot answer: stopped) leaves a clean mountpoint
// (unmounted, not a dead ENOTCONN mount), says what is left, exits 3, and the queue on disk goes at the next up.
t.test('Ctrl-C twice leaves at once, unmounted, says what stays queued and exits 3; the next up commits it', async (t) => {
  const base = await tempDir(t, 'up-ctrl-c-twice');
  const mountpoint = path.join(base, 'Stratus');
  const dataDir = path.join(base, 'data');
  const cacheDir = path.join(base, 'cache');
  const up = startUp(t, mountpoint, dataDir, cacheDir, { detached: true });
  await up.ready;
  const server = await embeddedServer(up.child.pid!);
  const file = await fs.open(path.join(mountpoint, 'twice.txt'), 'w');
  await file.writeFile('queued at the second Ctrl-C\n');
  process.kill(server, 'SIGSTOP'); // nothing can commit until both Ctrl-Cs are in
  try {
    await file.close();
    await eventually('the closed file queued', () => driveStatus(mountpoint), (s) => s.pendingCommits === 1);
    process.kill(-up.child.pid!, 'SIGINT');
    await eventually('the drain to start', async () => up.stderr(), (s) => /SIGINT: waiting for 1 pending commit/.test(s));
    process.kill(-up.child.pid!, 'SIGINT');
    t.equal(await up.exited, EXIT_PENDING, `exit ${EXIT_PENDING}: a commit was left behind`);
  } finally {
    process.kill(server, 'SIGCONT');
  }
  t.match(up.stderr(), /SIGINT again: leaving now; 1 commit\(s\), [\d.]+[KMG]?B stay queued in .*cache and go at the next mount/, 'it says what is left');
  t.match(up.stderr(), /unmounted /, 'it says it unmounted');
  t.ok(await notMounted(mountpoint), 'the mount is gone (no dead mountpoint left behind)');
  t.same(await fs.readdir(mountpoint), [], 'the mountpoint is a plain empty folder again (no ENOTCONN)');
  await eventually('the embedded server to exit with up', () => running(server), (alive) => !alive, 15_000);

  const next = startUp(t, mountpoint, dataDir, cacheDir, { listen: up.listen() });
  await next.ready;
  await eventually('the queue drained', () => driveStatus(mountpoint), (s) => s.pendingCommits === 0 && s.online);
  const { token } = JSON.parse(await fs.readFile(path.join(dataDir, 'local-user.json'), 'utf8')) as { token: string };
  const client = new StratusClient({ server: `http://${up.listen()}`, token });
  t.teardown(() => client.close());
  t.equal(await remoteText(client, 'twice.txt'), 'queued at the second Ctrl-C\n', 'the next up committed it: the server has it');
  await run(process.execPath, [bin, 'unmount', mountpoint]);
  t.equal(await next.exited, 0, 'and exits 0 at its stop');
});

// Proves `up` restarts its embedded server when it dies (on the same address), says so, and the
// drive keeps committing through it.
t.test('an embedded server killed while up runs is restarted, and the drive keeps working', async (t) => {
  const base = await tempDir(t, 'up-restart');
  const mountpoint = path.join(base, 'Stratus');
  const dataDir = path.join(base, 'data');
  const up = startUp(t, mountpoint, dataDir, path.join(base, 'cache'), { detached: true });
  await up.ready;
  const first = await embeddedServer(up.child.pid!);
  process.kill(first, 'SIGKILL');
  await eventually('up to restart its server', async () => up.stderr(), (s) => /the embedded server was restarted \(pid \d+\)/.test(s));
  t.match(up.stderr(), /the embedded server exited \(SIGKILL\); restarting it in [\d.]+ s/, 'it says the server died and that it restarts it');
  const second = await embeddedServer(up.child.pid!);
  t.not(second, first, 'a new server process');

  await fs.writeFile(path.join(mountpoint, 'after-restart.txt'), 'written after the server was restarted\n');
  const { token } = JSON.parse(await fs.readFile(path.join(dataDir, 'local-user.json'), 'utf8')) as { token: string };
  const client = new StratusClient({ server: `http://${up.listen()}`, token });
  t.teardown(() => client.close());
  await eventually('the file committed through the new server', () => remoteText(client, 'after-restart.txt'), (text) => text === 'written after the server was restarted\n', 30_000);
  t.pass('the drive committed through the restarted server');
  await run(process.execPath, [bin, 'unmount', mountpoint]);
  t.equal(await up.exited, 0, 'up exits 0 at its stop');
  t.notOk(await running(second), 'and stops the restarted server too');
});

// Proves the restarts stop after repeated immediate failures (a server that cannot start), said
// in one line, while the drive keeps running and stops cleanly.
t.test('up gives up restarting a server that keeps failing at start; the drive keeps running', async (t) => {
  const base = await tempDir(t, 'up-give-up');
  const mountpoint = path.join(base, 'Stratus');
  const dataDir = path.join(base, 'data');
  const up = startUp(t, mountpoint, dataDir, path.join(base, 'cache'), { detached: true });
  await up.ready;
  await fs.mkdir(path.join(mountpoint, 'docs'));
  t.same(await fs.readdir(mountpoint), ['docs'], 'the root is listed (offline, the drive shows what it has listed)');
  await eventually('the folder committed', () => driveStatus(mountpoint), (st) => st.pendingCommits === 0);
  // The running server keeps its open database; every new one finds garbage in its place.
  await fs.writeFile(path.join(base, 'garbage'), 'this is not a database, and much longer than a header '.repeat(20));
  await fs.rename(path.join(base, 'garbage'), path.join(dataDir, 'stratus.sqlite'));
  process.kill(await embeddedServer(up.child.pid!), 'SIGKILL');
  await eventually('up to give up', async () => up.stderr(), (s) => /not restarting it/.test(s), 30_000);
  t.match(up.stderr(), /the embedded server failed 6 times in a row \(last: .*before serving\); not restarting it: what you write stays queued until a server answers on http:\S+/, 'it says it gives up, and why');
  t.equal((up.stderr().match(/restarting it in/g) ?? []).length, 5, 'after 5 restarts');
  t.same(await fs.readdir(mountpoint), ['docs'], 'the drive still answers');
  await run(process.execPath, [bin, 'unmount', mountpoint]);
  t.equal(await up.exited, 0, 'and stops cleanly (nothing was pending)');
});

t.test('an up killed with SIGKILL takes its embedded server with it (no orphan keeps the port and data)', async (t) => {
  const base = await tempDir(t, 'up-kill');
  const up = startUp(t, path.join(base, 'Stratus'), path.join(base, 'data'), path.join(base, 'cache'), { detached: true });
  await up.ready;
  const server = await embeddedServer(up.child.pid!);
  t.teardown(async () => {
    if (await running(server)) process.kill(server, 'SIGKILL');
  });
  up.child.kill('SIGKILL');
  await up.exited;
  await eventually('the embedded server to exit', () => running(server), (alive) => !alive, 15_000);
  t.pass('the embedded server exited by itself');
});

t.test(`a drive stopped with commits still pending exits ${EXIT_PENDING} and keeps them queued for the next mount`, async (t) => {
  const server = await startServerProcess(t);
  const { token, client } = await server.addUser('alice');
  const drive = await mountDrive(t, server, token, { drainTimeout: 1 });
  t.same(await fs.readdir(drive.mountpoint), [], 'the drive lists its root (offline, a new file needs its folder listed)');
  await server.kill();
  await eventually('the drive to see its server gone', () => driveStatus(drive.mountpoint), (s) => !s.online);
  await fs.writeFile(drive.p('offline.txt'), 'written after the server died\n');
  await eventually('the closed file queued', () => driveStatus(drive.mountpoint), (s) => s.pendingCommits >= 1);

  t.equal(await drive.stop(), EXIT_PENDING, `SIGTERM with the server gone: exit ${EXIT_PENDING}, not 0`);
  t.match(drive.stderr(), /\d+ commit\(s\), [\d.]+[KMG]?B still pending after 1 s; they stay queued in /, 'it says what is left');
  t.ok(await notMounted(drive.mountpoint), 'it unmounted all the same');
  for (const cmd of ['mount', 'up']) {
    const { stdout } = await run(process.execPath, [bin, cmd, '--help']);
    t.match(stdout, new RegExp(`exit code ${EXIT_PENDING}`), `${cmd} --help documents exit code ${EXIT_PENDING}`);
  }

  // The queue stayed on disk: with the server back, the next mount of that cache commits it.
  const again = await startServerProcess(t, { dataDir: server.dataDir, listen: server.listen });
  const next = await mountDrive(t, again, token, { cacheDir: drive.cacheDir, mountpoint: drive.mountpoint });
  await eventually('the queue drained', () => driveStatus(next.mountpoint), (s) => s.pendingCommits === 0 && s.online);
  t.equal(await remoteText(client, 'offline.txt'), 'written after the server died\n', 'the server has what was pending');
  t.equal(await next.stop(), 0, 'a stop with nothing pending exits 0');
});

// Proves `stratus unmount` asks the drive over its control socket and shows the drain as it
// goes: with the server gone, it says what it waits for, then what stays queued, and exits 3 as
// the drive does.
t.test(`stratus unmount streams the drain's progress and exits ${EXIT_PENDING} when commits stay queued`, async (t) => {
  const server = await startServerProcess(t);
  const { token } = await server.addUser('alice');
  const drive = await mountDrive(t, server, token, { drainTimeout: 1 });
  t.same(await fs.readdir(drive.mountpoint), [], 'the root is listed');
  await server.kill();
  await eventually('the drive to see its server gone', () => driveStatus(drive.mountpoint), (s) => !s.online);
  await fs.writeFile(drive.p('queued.txt'), 'stays queued\n');
  await eventually('the closed file queued', () => driveStatus(drive.mountpoint), (s) => s.pendingCommits === 1);
  const res = await run(process.execPath, [bin, 'unmount', drive.mountpoint]).then(
    (r) => ({ code: 0, stderr: r.stderr }),
    (e: { code: number; stderr: string }) => e,
  );
  t.equal(res.code, EXIT_PENDING, `stratus unmount exits ${EXIT_PENDING}`);
  t.match(res.stderr, /^stratus: waiting for 1 pending commit\(s\), [\d.]+[KMG]?B\n/, 'it shows what the drain waits for, as the drive streams it');
  t.match(res.stderr, /stratus: unmounted \S+; 1 commit\(s\), [\d.]+[KMG]?B still pending, queued in \S+ for the next mount\n$/, 'then what stays queued, and where');
  t.equal(await drive.stop(), EXIT_PENDING, `the drive exits ${EXIT_PENDING} too`);
  t.ok(await notMounted(drive.mountpoint), 'unmounted');
});

t.test('stratus mount fails with one clear line', async (t) => {
  const base = await tempDir(t, 'mount-errors');
  const full = path.join(base, 'full');
  await fs.mkdir(full);
  await fs.writeFile(path.join(full, 'x'), 'x');
  const cases: [string, string[], RegExp][] = [
    ['no token', ['mount', full, '--server', 'http://127.0.0.1:9'], /no token: set STRATUS_TOKEN, or give --token-file FILE or token_file in the config file/],
    ['missing mountpoint', ['mount', path.join(base, 'nope'), '--server', 'http://127.0.0.1:9', '--token', 'stx_x'], /mountpoint .*nope does not exist/],
    ['mountpoint not empty', ['mount', full, '--server', 'http://127.0.0.1:9', '--token', 'stx_x'], /mountpoint .*full is not an empty directory/],
    ['bad cache size', ['mount', full, '--server', 'http://127.0.0.1:9', '--token', 'stx_x', '--cache-size', 'lots'], /not a size: lots/],
  ];
  for (const [what, args, message] of cases) {
    const res = await run(process.execPath, [bin, ...args], { env: { ...process.env, STRATUS_TOKEN: '' } }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    t.not(res.code, 0, `${what}: exits non-zero`);
    t.match(res.stderr, message, `${what}: says why`);
    t.equal(res.stderr.trim().split('\n').filter((l) => !l.startsWith('(run with')).length, 1, `${what}: in one line`);
  }
  t.same(await fs.readdir(full), ['x'], 'the refused mountpoint is untouched');
});
