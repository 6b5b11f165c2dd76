import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import pg from 'pg';
import t, { type Test } from 'tap';
import { startThrowawayPostgres } from '../../scripts/test-postgres.js';
import { canonical, eventually, mountDrive, startServerProcess, tempDir, treeOf, treeValue, type Drive } from '../helpers/drive.js';
import { prng, MiB } from '../helpers/bigdata.js';

/*
 * Scale-out (DESIGN §8) with live sync: two `stratus serve` processes on ONE PostgreSQL database
 * (and one shared block folder), drive A on server 1, drive B on server 2. A change committed
 * through one server reaches the drive of the other with no action there (the hint crosses
 * instances over LISTEN/NOTIFY): create, edit, delete, both ways.
 *
 * PostgreSQL: the cluster `npm test` starts (STRATUS_TEST_PG_URL), else a throwaway one started
 * here; skipped with STRATUS_TEST_PG=off.
 */

/** A fresh database in the test cluster, dropped at teardown (after everything that uses it stopped). */
async function freshDatabase(t: Test): Promise<string> {
  let admin = process.env.STRATUS_TEST_PG_URL;
  if (!admin) {
    const cluster = await startThrowawayPostgres();
    t.teardown(() => cluster.stop());
    admin = cluster.url;
  }
  const name = `stratus_sync_${crypto.randomBytes(6).toString('hex')}`;
  const query = async (sql: string) => {
    const c = new pg.Client({ connectionString: admin });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  await query(`CREATE DATABASE ${name}`);
  t.teardown(() => query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return url.toString();
}

async function main(): Promise<void> {
  const db = await freshDatabase(t);
  const blocks = await tempDir(t, 'shared-blocks');
  // One after the other: the first one creates the schema.
  const s1 = await startServerProcess(t, { db, blocks });
  const s2 = await startServerProcess(t, { db, blocks });
  await s1.addUser('pat');
  const devA = await s1.addDevice('pat', 'devA');
  const devB = await s2.addDevice('pat', 'devB');
  const a = await mountDrive(t, s1, devA.token, { device: 'devA', drainTimeout: 5 });
  const b = await mountDrive(t, s2, devB.token, { device: 'devB', drainTimeout: 5 });

  async function converge(t: Test, d: Drive, dir: string, expected: Record<string, string>, what: string): Promise<void> {
    const started = Date.now();
    const seen = await eventually(`${what}: ${dir} on ${d.mountpoint}`, () => treeOf(d.p(dir)), (tr) => canonical(tr) === canonical(expected)).catch((err: Error) => err);
    if (seen instanceof Error) t.fail(seen.message);
    else t.same(seen, expected, `${what} (${Date.now() - started} ms)`);
  }

  for (const [from, to, label] of [
    [a, b, 'A (server 1) to B (server 2)'],
    [b, a, 'B (server 2) to A (server 1)'],
  ] as const) {
    t.test(`create, edit, delete from ${label}`, async (t) => {
      const dir = from === a ? 'from-a' : 'from-b';
      await fs.mkdir(from.p(dir));
      await converge(t, to, dir, {}, 'mkdir arrives');
      await fs.writeFile(from.p(dir, 'note.txt'), 'first\n');
      await converge(t, to, dir, { 'note.txt': 'first\n' }, 'create arrives');
      await fs.writeFile(from.p(dir, 'note.txt'), 'second, longer\n');
      await converge(t, to, dir, { 'note.txt': 'second, longer\n' }, 'edit arrives');
      const big = prng(`pg-${dir}`)(2 * MiB + 99);
      await fs.writeFile(from.p(dir, 'big.bin'), big);
      await converge(t, to, dir, { 'big.bin': treeValue(big), 'note.txt': 'second, longer\n' }, 'a file of several blocks arrives');
      await fs.rm(from.p(dir, 'note.txt'));
      await converge(t, to, dir, { 'big.bin': treeValue(big) }, 'delete arrives');
    });
  }
}

if (process.env.STRATUS_TEST_PG === 'off') t.plan(0, 'STRATUS_TEST_PG=off: no PostgreSQL');
else await main();
