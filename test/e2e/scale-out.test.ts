import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { startBalancer } from '../helpers/balancer.js';
import { createPgDatabase, stopOwnCluster } from '../helpers/backend.js';
import { MiB, prng } from '../helpers/bigdata.js';
import { driveStatus, eventually, mountDrive, startServerProcess, tempDir, type ServerProcess } from '../helpers/drive.js';
import { startGcsEmulator } from '../helpers/gcs.js';
import { freePort } from '../helpers/ports.js';

/*
 * Scale-out (DESIGN §8, issue 13): three `stratus serve` processes on one PostgreSQL database and
 * one Cloud Storage bucket (the emulator of test/helpers/gcs.ts; downloads by signed URL), behind
 * HAProxy (round robin, no sticky sessions), two drives of one user
 * connected through the balancer. While drive A writes a 256 MiB file and 200 small files, each
 * backend in turn is killed (SIGKILL) and started again: not one syscall on A fails, and
 * everything arrives byte-identical on drive B. Requests cut by a kill are retried by the drives
 * (block puts are idempotent, a commit whose reply was lost is recognised); their WebSockets
 * reconnect through the balancer to another backend and catch up.
 *
 * PostgreSQL: the cluster `npm test` starts; skipped with STRATUS_TEST_PG=off.
 */

if (process.env.STRATUS_TEST_PG === 'off') {
  t.comment('PostgreSQL is off (STRATUS_TEST_PG=off): three backends need it');
} else {
  t.teardown(stopOwnCluster);
  t.test('three backends on one PostgreSQL and one bucket behind HAProxy, each killed in turn under load: no failed syscall, everything arrives', async (t) => {
    const db = await createPgDatabase();
    t.teardown(() => db.drop());
    // Its environment (STORAGE_EMULATOR_HOST, the signing key) goes to every backend process.
    const blocks = (await startGcsEmulator(t)).blocksUrl();
    const ports = [await freePort(), await freePort(), await freePort()];
    const start = (port: number) => startServerProcess(t, { db: db.url, blocks, listen: `127.0.0.1:${port}` });
    // One after the other: the first one creates the schema.
    const servers: ServerProcess[] = [];
    for (const port of ports) servers.push(await start(port));
    const balancer = await startBalancer(t, await tempDir(t, 'haproxy'), ports.map((p) => `127.0.0.1:${p}`));
    await servers[0]!.addUser('sam');
    const devA = await servers[0]!.addDevice('sam', 'devA');
    const devB = await servers[1]!.addDevice('sam', 'devB');
    const a = await mountDrive(t, servers[0]!, devA.token, { device: 'devA', serverUrl: balancer.url, drainTimeout: 60 });
    const b = await mountDrive(t, servers[0]!, devB.token, { device: 'devB', serverUrl: balancer.url, drainTimeout: 5 });

    // The writer: every syscall's failure is recorded (none may fail).
    const failures: string[] = [];
    const expected = new Map<string, string>();
    const sha = (bytes: Buffer) => crypto.createHash('sha256').update(bytes).digest('hex');
    const big = prng('scale-out big')(256 * MiB);
    const small = prng('scale-out small');
    let writing = true;
    const writer = (async () => {
      try {
        await fs.mkdir(a.p('small'));
        for (let i = 0; i < 200; i++) {
          const bytes = small(200 + i * 97);
          const p = path.join('small', `f${i}.bin`);
          await fs.writeFile(a.p(p), bytes).catch((err: Error) => failures.push(`${p}: ${err.message}`));
          expected.set(p, sha(bytes));
          if (i === 100) {
            await fs.writeFile(a.p('big.bin'), big).catch((err: Error) => failures.push(`big.bin: ${err.message}`));
            expected.set('big.bin', sha(big));
          }
        }
      } finally {
        writing = false;
      }
    })();

    // Each backend in turn: killed under the writes and A's uploads and commits, started again on its
    // port once the kill is done; until A has nothing pending (at least once each, at most three rounds).
    let kills = 0;
    let underLoad = 0;
    for (let round = 0; round < 9; round++) {
      const busy = writing || (await driveStatus(a.mountpoint)).pendingCommits > 0;
      if (!busy && round >= 3) break;
      if (busy) underLoad++;
      const i = round % 3;
      await servers[i]!.kill();
      kills++;
      servers[i] = await start(ports[i]!);
    }
    await writer;
    t.comment(`${kills} kills, ${underLoad} of them while A was writing or had commits pending`);
    t.ok(underLoad >= 2, 'backends were killed while the drive was busy');
    t.same(failures, [], `no syscall on drive A failed while ${kills} backend kills happened`);

    // A drains through the balancer; B gets everything through the change feed.
    await eventually('drive A has committed everything', () => driveStatus(a.mountpoint), (s) => s.pendingCommits === 0, 120_000, 200);
    const seen = await eventually(
      'drive B has every file',
      async () => {
        const got = new Map<string, string>();
        for (const p of expected.keys()) {
          const bytes = await fs.readFile(b.p(p)).catch(() => undefined);
          if (bytes) got.set(p, sha(bytes));
        }
        return got;
      },
      (got) => [...expected].every(([p, h]) => got.get(p) === h),
      120_000,
      500,
    ).catch((err: Error) => err);
    if (seen instanceof Error) t.fail(seen.message);
    else t.pass(`drive B reads all ${expected.size} files byte-identical (the 256 MiB one included)`);
  });
}
