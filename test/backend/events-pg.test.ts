import type { Knex } from 'knex';
import pg from 'pg';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { openDatabase } from '../../backend/db/connect.js';
import type { BusEvent } from '../../backend/notify/bus.js';
import { PgBus } from '../../backend/notify/pg-bus.js';
import { authenticate } from '../../backend/services/accounts.js';
import { createNode } from '../../backend/services/nodes.js';
import { RateLimits } from '../../backend/services/rate-limits.js';
import { defaultSettings } from '../../backend/settings.js';
import { StratusClient } from '../../protocol/client.js';
import { rejectsWith } from '../helpers/api-assert.js';
import { coalescedBound, connectEvents, createPgDatabase, within, type EventStream } from '../helpers/backend.js';
import { bin, run, startServerProcess } from '../helpers/drive.js';

/**
 * Scale-out (DESIGN §8): N `stratus serve` processes on one PostgreSQL database push each other's
 * changes over LISTEN/NOTIFY — a WebSocket on one server hears a change made through another.
 * And the engine itself: local delivery at once, no echo, reconnect with a resync. Hints carry no
 * journal position (`{"hint": N}` counts a connection's hints): a client pulls on each.
 */

const quiet = pino({ level: 'silent' });

async function pgQuery(url: string, sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await c.query(sql, params);
  } finally {
    await c.end();
  }
}

/** Kills this database's LISTEN connections with that application_name; returns how many. */
async function killListeners(url: string, applicationName: string): Promise<number> {
  const res = await pgQuery(url, 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1 AND pid <> pg_backend_pid()', [applicationName]);
  return res.rowCount ?? 0;
}

interface ServeProcess {
  url: string;
  client(token: string): StratusClient;
}

/** `stratus serve --db URL` on a free port (the shared helper: stopped, and its clients closed, when `t` ends). */
async function serve(t: Test, dbUrl: string): Promise<ServeProcess> {
  const server = await startServerProcess(t, { db: dbUrl });
  const clients: StratusClient[] = [];
  t.teardown(() => Promise.all(clients.map((c) => c.close())));
  return {
    url: server.url,
    client(token) {
      const c = new StratusClient({ server: server.url, token });
      clients.push(c);
      return c;
    },
  };
}

/** `stratus user add` / `user token` against the database: the token is the last line. */
async function cliToken(dbUrl: string, args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [bin, 'user', ...args, '--db', dbUrl]);
  return stdout.trim().split('\n').pop()!;
}

async function open(t: Test, serverUrl: string, token: string): Promise<EventStream> {
  const stream = await connectEvents(serverUrl, token);
  t.teardown(() => stream.close());
  return stream;
}

/** Collects a bus's events; `waitFor` resolves once one matches. */
function recorder(bus: PgBus): { events: BusEvent[]; waitFor(pred: (e: BusEvent) => boolean, timeoutMs?: number): Promise<void> } {
  const events: BusEvent[] = [];
  const waiters = new Set<() => void>();
  bus.subscribe((e) => {
    events.push(e);
    for (const w of waiters) w();
  });
  return {
    events,
    waitFor(pred, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (!events.some(pred)) return false;
          waiters.delete(check);
          clearTimeout(timer);
          resolve();
          return true;
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no such bus event within ${timeoutMs} ms: ${JSON.stringify(events)}`));
        }, timeoutMs);
        if (!check()) waiters.add(check);
      });
    },
  };
}

const adminUrl = process.env.STRATUS_TEST_PG_URL;

if (!adminUrl) {
  t.test('server push across processes on PostgreSQL', { skip: 'STRATUS_TEST_PG_URL is unset: run through node dist/scripts/run-tests.js' }, () => undefined);
} else {
  t.test('PgBus: local publishes are delivered at once and not again as an echo; others hear them over NOTIFY', async (t) => {
    const database = await createPgDatabase();
    t.teardown(() => database.drop());
    const db: Knex = await openDatabase(database.url, '/nonexistent');
    t.teardown(() => db.destroy());
    const a = await PgBus.start({ url: database.url, db, log: quiet, applicationName: 'bus-a' });
    const b = await PgBus.start({ url: database.url, db, log: quiet, applicationName: 'bus-b' });
    t.teardown(() => Promise.all([a.close(), b.close()]));
    const ra = recorder(a);
    const rb = recorder(b);

    // Hints carry users only (no journal position): tests tell them apart by their users.
    a.publish({ userIds: [1, 2] });
    t.same(ra.events, [{ kind: 'change', userIds: [1, 2] }], 'delivered to its own process before publish returns');
    await rb.waitFor((e) => e.kind === 'change' && e.userIds.includes(1));
    t.same(rb.events, [{ kind: 'change', userIds: [1, 2] }], 'the other process hears it once');

    // NOTIFYs reach each listener in commit order: had A's echo come back, it would precede this.
    b.publish({ userIds: [3] });
    await ra.waitFor((e) => e.kind === 'change' && e.userIds.includes(3));
    t.same(ra.events, [{ kind: 'change', userIds: [1, 2] }, { kind: 'change', userIds: [3] }], 'no echo of its own publish');

    const many = Array.from({ length: 3000 }, (_, i) => 10_000 + i);
    a.publish({ userIds: many });
    await rb.waitFor((e) => e.kind === 'change' && e.userIds.includes(many.at(-1)!));
    const heard = rb.events.flatMap((e) => (e.kind === 'change' && e.userIds[0]! >= 10_000 ? e.userIds : []));
    t.same(heard, many, 'a hint for more users than one NOTIFY payload holds is split, none lost');
    t.ok(rb.events.filter((e) => e.kind === 'change' && e.userIds[0]! >= 10_000).length > 1, 'into several events');
  });

  t.test('PgBus: when the LISTEN connection drops it reconnects and tells its listeners to resync', async (t) => {
    const database = await createPgDatabase();
    t.teardown(() => database.drop());
    const db: Knex = await openDatabase(database.url, '/nonexistent');
    t.teardown(() => db.destroy());
    const a = await PgBus.start({ url: database.url, db, log: quiet, applicationName: 'bus-a', reconnectMinMs: 20 });
    const b = await PgBus.start({ url: database.url, db, log: quiet, applicationName: 'bus-b' });
    t.teardown(() => Promise.all([a.close(), b.close()]));
    const ra = recorder(a);

    t.equal(await killListeners(database.url, 'bus-a'), 1, 'the LISTEN connection was terminated');
    await ra.waitFor((e) => e.kind === 'resync');
    t.pass('a resync after reconnecting');
    b.publish({ userIds: [7] });
    await ra.waitFor((e) => e.kind === 'change' && e.userIds.includes(7));
    t.pass('and it listens again');
  });

  t.test('two stratus serve processes on one database push each other\'s changes', async (t) => {
    const database = await createPgDatabase();
    t.teardown(() => database.drop());
    // One after the other: the first runs the migrations.
    const s1 = await serve(t, database.url);
    const s2 = await serve(t, database.url);
    const alice1 = await cliToken(database.url, ['add', 'alice']);
    const alice2 = await cliToken(database.url, ['token', 'alice', '--device', 'laptop']);
    const bob = await cliToken(database.url, ['add', 'bob']);
    const aliceVia1 = s1.client(alice1);
    const aliceVia2 = s2.client(alice2);
    const root = await aliceVia1.root();

    t.test('a WebSocket on server 1 hears a change made through server 2', async (t) => {
      const events = await open(t, s1.url, alice1);
      t.equal(await events.waitFor(0), 0, 'first message: hint 0');
      const head = (await aliceVia1.changesHead()).cursor;
      t.equal((await aliceVia2.changesHead()).cursor, head, 'both servers give alice the same head');
      const created = await aliceVia2.create({ parent_id: root.id, name: 'via server 2', kind: 'file' });
      t.equal(await events.waitFor(1), 1, 'the change: hint 1');
      const page = await aliceVia1.changes(head);
      t.same(page.changes.map((c) => c.id), [created.id], 'server 1 serves the change the hint announced');
      t.equal(page.cursor, (await aliceVia2.changesHead()).cursor, 'and its cursor is the head server 2 gives');
    });

    t.test('and the other way round', async (t) => {
      const events = await open(t, s2.url, alice2);
      await events.waitFor(0);
      const head = (await aliceVia2.changesHead()).cursor;
      const created = await aliceVia1.create({ parent_id: root.id, name: 'via server 1', kind: 'dir' });
      t.equal(await events.waitFor(1), 1, 'the change: hint 1');
      const page = await aliceVia2.changes(head);
      t.same(page.changes.map((c) => c.id), [created.id], 'server 2 serves it');
      t.equal(page.cursor, (await aliceVia1.changesHead()).cursor, 'up to the head server 1 gives');
    });

    t.test("another user's changes through the other server never reach my connection", async (t) => {
      const mine = await open(t, s1.url, alice1);
      const theirs = await open(t, s1.url, bob);
      await mine.waitFor(0);
      await theirs.waitFor(0);
      const bobVia2 = s2.client(bob);
      const bobRoot = await bobVia2.root();
      await bobVia2.create({ parent_id: bobRoot.id, name: 'private', kind: 'file' });
      await theirs.waitFor(1);
      await aliceVia2.create({ parent_id: root.id, name: 'mine again', kind: 'file' });
      await mine.waitFor(1);
      t.same(mine.messages, [{ hint: 0 }, { hint: 1 }], 'only my first message and my change');
    });

    t.test('a device revoked through server 2 loses its connection on server 1 at once', async (t) => {
      const token = await cliToken(database.url, ['token', 'alice', '--device', 'tablet']);
      const events = await open(t, s1.url, token);
      await events.waitFor(0);
      const tablet = (await s1.client(token).whoami()).device;
      await aliceVia2.revokeDevice(tablet.id);
      // The servers' keepalive is 30 s: only the revocation carried over LISTEN/NOTIFY closes it this soon.
      t.equal(await within(events.closed, 5_000, 'the connection on the other server closed'), 1008, 'closed with 1008');
      await rejectsWith(t, s1.client(token).root(), 401, 'unauthorized', 'server 1 no longer authenticates the token at once (its 2 s auth cache was evicted)');
    });

    t.test('a burst through server 2 reaches a connection on server 1 as a handful of messages', async (t) => {
      const events = await open(t, s1.url, alice1);
      await events.waitFor(0);
      const dir = await aliceVia2.create({ parent_id: root.id, name: 'burst', kind: 'dir' });
      let next = 0;
      const worker = async () => {
        while (next < 300) await aliceVia2.create({ parent_id: dir.id, name: `f${next++}`, kind: 'file' });
      };
      const t0 = performance.now();
      await Promise.all([worker(), worker(), worker()]);
      const burstMs = performance.now() - t0;
      const final = (await aliceVia2.changesHead()).cursor;
      // One hint counted per commit alice can see: the message counting the last went out after it.
      t.equal(await events.waitFor(301), 301, 'hears of the last commit: its count reached 301');
      t.ok(events.hints.length <= coalescedBound(burstMs), `${events.hints.length} messages for 301 commits (at most ${coalescedBound(burstMs)} for ${burstMs.toFixed(0)} ms)`);
      t.equal((await aliceVia1.changesHead()).cursor, final, 'and server 1 has the head server 2 has');
    });

    t.test('after its LISTEN connection drops, a server hints every connection again: a change no hint announced still arrives', async (t) => {
      const events = await open(t, s1.url, alice1);
      await events.waitFor(0);
      const head = (await aliceVia1.changesHead()).cursor;
      // A writer that publishes nothing (its pool has no notify bus): only the resync can tell.
      const db = await openDatabase(database.url, '/nonexistent');
      t.teardown(() => db.destroy());
      const me = await authenticate(db, alice1);
      if (!me) throw new Error("alice's token does not authenticate");
      const silent = await createNode({ db, store: undefined as never, settings: defaultSettings, rates: new RateLimits(defaultSettings.rate) }, me, { parent_id: root.id, name: 'silent', kind: 'file' });
      t.not((await aliceVia1.changesHead()).cursor, head, 'the change committed');
      // Had a hint announced it, it would be here before the next change's: alice's next change is hinted.
      const marker = await aliceVia1.create({ parent_id: root.id, name: 'hinted', kind: 'file' });
      t.equal(await events.waitFor(1), 1, 'a change made through a server is hinted');
      t.same(events.messages, [{ hint: 0 }, { hint: 1 }], 'and no hint announced the silent one');
      t.ok((await killListeners(database.url, 'stratus-notify')) >= 1, "the servers' LISTEN connections were terminated");
      t.ok((await events.waitFor(2)) >= 2, 'the resync after reconnecting sends a hint');
      const page = await aliceVia1.changes(head);
      t.same(page.changes.map((c) => c.id), [silent.id, marker.id], 'and the pull on it finds the change no hint announced');
      t.equal(page.cursor, (await aliceVia1.changesHead()).cursor);
    });
  });
}
