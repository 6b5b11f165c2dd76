import fs from 'node:fs/promises';
import path from 'node:path';
import { addDevice } from '../../backend/services/accounts.js';
import t, { type Test } from 'tap';
import { startTestBackend } from '../helpers/backend.js';
import { KiB, MiB, prng, readAt, sha256File, writeRandomFile } from '../helpers/bigdata.js';
import { canonical, driveStatus, eventually, mountDrive, startServerProcess, tempDir, treeOf, type Drive, type DriveStatus, type ServerProcess } from '../helpers/drive.js';
import { startProxy } from '../helpers/proxy.js';

/*
 * The drive without its server (issue 4): writes keep working and queue durably while the backend
 * is down (also across a restart of the mount), `stratus status` says so, everything arrives on
 * another drive byte for byte once the backend is back; a read that needs the server fails with
 * EIO at once instead of hanging, while cached content stays readable; and a WebSocket cut
 * server-side in the middle of a burst costs latency, never a change.
 *
 * Servers and mounts are their own processes (the last test runs the server in this process, to
 * cut its WebSockets); this process only uses async fs calls against the mounts.
 */

interface Planned {
  name: string;
  size: number;
  seed: string;
}

/** 50 files of various sizes up to 2 MiB (empty, tiny, block-boundary neighbours, several blocks). */
function plan(prefix: string, count = 50): Planned[] {
  const fixed = [0, 1, 17, 4 * KiB, 64 * KiB, 256 * KiB - 1, 256 * KiB + 1, MiB, 2 * MiB - 1, 2 * MiB];
  const next = prng(`${prefix}-sizes`);
  return Array.from({ length: count }, (_, i) => {
    const r = next(4).readUInt32LE(0);
    // Most small, a quarter up to 2 MiB.
    const size = fixed[i] ?? (i % 4 === 0 ? r % (2 * MiB) : r % (96 * KiB));
    return { name: `${prefix}-${String(i).padStart(2, '0')}.bin`, size, seed: `${prefix}-${i}` };
  });
}

/** Writes the planned files into `dir` in order; `before(i)` runs before file i. Returns name → sha256. */
async function writeAll(t: Test, dir: string, files: Planned[], before: (i: number) => Promise<void>): Promise<Map<string, string>> {
  const shas = new Map<string, string>();
  for (const [i, f] of files.entries()) {
    await before(i);
    shas.set(f.name, await writeRandomFile(path.join(dir, f.name), f.size, f.seed));
  }
  t.pass(`all ${files.length} writes on A succeeded`);
  return shas;
}

/** Every planned file reads back from `dir` with the right size and sha256 (polled: on B they arrive over time). */
async function arrived(t: Test, d: Drive, dir: string, files: Planned[], shas: Map<string, string>, what: string, timeoutMs = 20_000): Promise<void> {
  const started = Date.now();
  const verified = new Set<string>();
  // Each file on its own: one that fails (ENOENT, EIO, wrong size or bytes) does not hide the others.
  const missing = async () => {
    const listed = new Set(await fs.readdir(d.p(dir)));
    const left: string[] = [];
    for (const f of files) {
      if (verified.has(f.name)) continue;
      let why: string;
      if (!listed.has(f.name)) why = 'not listed';
      else {
        try {
          const st = await fs.stat(d.p(dir, f.name));
          const sha = st.size === f.size ? (await sha256File(d.p(dir, f.name))).hash : undefined;
          why = st.size !== f.size ? `size ${st.size} not ${f.size}` : sha !== shas.get(f.name) ? 'other bytes' : '';
        } catch (err) {
          why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        }
      }
      if (why) left.push(`${f.name} (${f.size} B): ${why}`);
      else verified.add(f.name);
    }
    return left;
  };
  const left = await eventually(what, missing, (names) => names.length === 0, timeoutMs).catch((err: Error) => err);
  if (left instanceof Error) t.fail(`${left.message} (${verified.size} of ${files.length} verified)`);
  else t.pass(`${what}: all ${files.length} byte-identical (${Date.now() - started} ms)`);
}

async function statusUntil(t: Test, d: Drive, ok: (s: DriveStatus) => boolean, what: string): Promise<DriveStatus | undefined> {
  const s = await eventually(`stratus status of ${d.mountpoint}: ${what}`, () => driveStatus(d.mountpoint), ok).catch((err: Error) => err);
  if (s instanceof Error) return void t.fail(s.message);
  t.pass(`stratus status --json: ${what} (${JSON.stringify({ connected: s.connected, pendingCommits: s.pendingCommits, pendingBytes: s.pendingBytes })})`);
  return s;
}

/** A server process, a user with devices A and B, and a folder both drives see. */
async function setup(t: Test, a: { cacheDir?: string; mountpoint?: string; drainTimeout?: number } = {}) {
  const server = await startServerProcess(t);
  await server.addUser('olive');
  const devA = await server.addDevice('olive', 'devA');
  const devB = await server.addDevice('olive', 'devB');
  const driveA = await mountDrive(t, server, devA.token, { device: 'devA', drainTimeout: 5, ...a });
  const driveB = await mountDrive(t, server, devB.token, { device: 'devB', drainTimeout: 5 });
  await fs.mkdir(driveA.p('burst'));
  await eventually('B to see the folder', () => treeOf(driveB.p('burst')), () => true);
  return { server, a: driveA, b: driveB, tokenA: devA.token };
}

function restart(t: Test, dead: ServerProcess): Promise<ServerProcess> {
  return startServerProcess(t, { dataDir: dead.dataDir, listen: dead.listen });
}

t.test('backend killed while A writes 50 files: writes go on, status says so, all arrive on B once it is back', async (t) => {
  const { server, a, b } = await setup(t);
  const files = plan('kill');
  // Files 0–19 with the backend up (their uploads still on the wire), then kill -9, then 20–49.
  const shas = await writeAll(t, a.p('burst'), files, async (i) => {
    if (i === 20) await server.kill();
  });
  await statusUntil(t, a, (s) => !s.connected && s.pendingCommits > 0, 'A is not connected and has pending commits');
  await arrived(t, a, 'burst', files, shas, 'offline, A reads back what it wrote', 5_000);

  const back = await restart(t, server);
  t.equal(back.url, server.url, 'the backend is back on the same address and data');
  await arrived(t, b, 'burst', files, shas, 'B receives every file');
  await statusUntil(t, a, (s) => s.connected && s.pendingCommits === 0, 'A is connected with nothing pending');
});

t.test('A stopped and restarted while the backend is down: it starts from its saved tree and queue; all arrive on B', async (t) => {
  const cacheDir = await tempDir(t, 'offline-cache');
  const mountpoint = await tempDir(t, 'offline-mnt');
  const { server, a, b, tokenA } = await setup(t, { cacheDir, mountpoint, drainTimeout: 1 });
  const files = plan('restart');
  const shas = await writeAll(t, a.p('burst'), files, async (i) => {
    if (i === 20) await server.kill();
  });

  // A clean stop while offline gives up draining after its --drain-timeout and exits, with 3: commits left behind.
  const stopped = Date.now();
  const drive = (attempt: string) => mountDrive(t, server, tokenA, { cacheDir, mountpoint, device: 'devA', drainTimeout: 1 }).then((d) => (t.pass(`${attempt}: A mounted with the backend down`), d));
  const code = await a.stop();
  t.equal(code, 3, `SIGTERM while offline: A exits, saying commits stay queued (${Date.now() - stopped} ms)`);
  t.ok(Date.now() - stopped < 15_000, 'promptly');

  const a2 = await drive('after SIGTERM');
  await arrived(t, a2, 'burst', files, shas, 'restarted offline, A shows every file it wrote', 5_000);
  await statusUntil(t, a2, (s) => !s.connected && s.pendingCommits > 0, 'restarted A is not connected and has pending commits');

  // And after a crash (kill -9) while offline: the queue and the tree are on disk.
  await a2.kill();
  const a3 = await drive('after kill -9');
  await arrived(t, a3, 'burst', files, shas, 'after kill -9, A still shows every file it wrote', 5_000);

  await restart(t, server);
  await arrived(t, b, 'burst', files, shas, 'B receives every file');
  await statusUntil(t, a3, (s) => s.connected && s.pendingCommits === 0, 'A is connected with nothing pending');
});

t.test('offline, a block never fetched fails with EIO at once (refused and blackholed server); cached content stays readable', async (t) => {
  const server = await startServerProcess(t);
  await server.addUser('olive');
  const devA = await server.addDevice('olive', 'devA');
  const devB = await server.addDevice('olive', 'devB');
  const proxy = await startProxy(t, server.url);
  const a = await mountDrive(t, server, devA.token, { device: 'devA', drainTimeout: 5 });
  const b = await mountDrive(t, server, devB.token, { device: 'devB', serverUrl: proxy.url, drainTimeout: 5 });
  const size = 24 * MiB;
  const big = prng('lazy')(size);
  await fs.mkdir(a.p('lazy'));
  await fs.writeFile(a.p('lazy', 'small.txt'), 'small and cached\n');
  await fs.writeFile(a.p('lazy', 'big.bin'), big);
  await eventually('B to see both files', () => treeOf(b.p('lazy')), (tr) => tr['small.txt'] === 'small and cached\n' && tr['big.bin'] !== undefined);
  await eventually('B to see big.bin whole', () => fs.stat(b.p('lazy', 'big.bin')), (st) => st.size === size);
  // Only the first 4 KiB (its block) is fetched on B. A block is at most 4 MiB, so reads at 0, 5, 10, 15 and 20 MiB all
  // need different blocks: each offline read below needs a block nothing fetched before.
  t.same(await readAt(b.p('lazy', 'big.bin'), 0, 4096), big.subarray(0, 4096), 'B reads the start of big.bin');
  const held = await fs.open(b.p('lazy', 'big.bin'), 'r');
  t.teardown(() => held.close().catch(() => undefined));

  const offlineChecks = async (mode: string, offsets: { handle: number; fresh: number }, withinMs: number) => {
    // A handle opened while online, and a fresh open: both fail with EIO, promptly.
    for (const how of ['open handle', 'fresh open'] as const) {
      const started = Date.now();
      const read = how === 'open handle' ? held.read(Buffer.alloc(4096), 0, 4096, offsets.handle) : readAt(b.p('lazy', 'big.bin'), offsets.fresh, 4096);
      const outcome = read.then(
        () => 'read succeeded',
        (err: NodeJS.ErrnoException) => err.code ?? err.message,
      );
      let timer: NodeJS.Timeout | undefined;
      const hung = new Promise<string>((resolve) => (timer = setTimeout(() => resolve(`no answer within ${withinMs} ms`), withinMs)));
      const got = await Promise.race([outcome, hung]);
      clearTimeout(timer);
      t.equal(got, 'EIO', `${mode}, ${how}: a read of a block never fetched fails with EIO (${Date.now() - started} ms)`);
      if (got.startsWith('no answer')) {
        // Let the hung read end (resume resets whatever the proxy held) before going on.
        proxy.resume();
        t.comment(`${mode}, ${how}: after resume: ${await outcome} (${Date.now() - started} ms)`);
        proxy.pause(mode === 'server refuses' ? 'refuse' : 'blackhole');
      }
    }
    t.equal(await fs.readFile(b.p('lazy', 'small.txt'), 'utf8'), 'small and cached\n', `${mode}: a cached small file reads`);
    t.same(await readAt(b.p('lazy', 'big.bin'), 0, 4096), big.subarray(0, 4096), `${mode}: the cached start of big.bin reads (fresh open)`);
    t.same((await fs.readdir(b.p('lazy'))).sort(), ['big.bin', 'small.txt'], `${mode}: the folder lists`);
  };

  proxy.pause('refuse');
  await offlineChecks('server refuses', { handle: 5 * MiB, fresh: 10 * MiB }, 5_000);
  proxy.resume();
  const again = await eventually('B to read at 5 MiB once online', () => readAt(b.p('lazy', 'big.bin'), 5 * MiB, 4096), () => true).catch((err: Error) => err);
  if (again instanceof Error) t.fail(again.message);
  else t.same(again, big.subarray(5 * MiB, 5 * MiB + 4096), 'back online, the same read succeeds');

  proxy.pause('blackhole');
  await offlineChecks('network drops packets', { handle: 15 * MiB, fresh: 20 * MiB }, 15_000);
  proxy.resume();
});

t.test('WebSockets dropped server-side in the middle of a burst of 100 files: B still gets all 100', async (t) => {
  const backend = await startTestBackend('sqlite');
  t.teardown(() => backend.close());
  const events = (backend as { events?: { connections(): number; disconnectAll(): void } }).events;
  if (!events) return void t.fail('the server has no events.disconnectAll() (GET /v1/events not there yet)');
  const userA = await backend.addUser('olive');
  const { token: tokenB } = await addDevice(backend.db, 'olive', 'devB');
  const a = await mountDrive(t, backend, userA.token, { device: 'devA', drainTimeout: 5 });
  const b = await mountDrive(t, backend, tokenB, { device: 'devB', drainTimeout: 5 });
  await eventually('both drives to open their WebSocket', async () => events.connections(), (n) => n >= 2);
  await fs.mkdir(a.p('burst'));
  await eventually('B to see the folder', () => treeOf(b.p('burst')), () => true);

  const expected: Record<string, string> = {};
  let drops = 0;
  for (let i = 0; i < 100; i++) {
    const name = `f${String(i).padStart(3, '0')}.txt`;
    expected[name] = `file ${i} ${prng(`ws-${i}`)(8).toString('hex')}\n`;
    await fs.writeFile(a.p('burst', name), expected[name]);
    if (i % 20 === 10) {
      events.disconnectAll();
      drops++;
    }
  }
  // And once more right after the last write: its hint may be lost, the reconnect's pull must not be.
  events.disconnectAll();
  drops++;
  const started = Date.now();
  const tree = await eventually('B to show all 100 files', () => treeOf(b.p('burst')), (tr) => canonical(tr) === canonical(expected)).catch((err: Error) => err);
  if (tree instanceof Error) t.fail(tree.message);
  else t.pass(`B shows all 100 files with their content, ${drops} server-side drops (${Date.now() - started} ms after the last write)`);
  const back = await eventually('both drives to reconnect', async () => events.connections(), (n) => n >= 2).catch((err: Error) => err);
  t.ok(!(back instanceof Error), 'both drives have reconnected their WebSocket');
});
