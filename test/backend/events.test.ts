import t, { type Test } from 'tap';
import { Coalescer } from '../../backend/notify/coalescer.js';
import { StratusClient } from '../../protocol/client.js';
import { coalescedBound, connectEvents, startTestBackend, stopOwnCluster, testEngines, within, type EventStream, type TestBackend, type TestUser } from '../helpers/backend.js';

/**
 * Server push (DESIGN §5 `GET /v1/events`): `{"hint": N}` messages over a WebSocket, N counting the
 * connection's hints — `{"hint": 0}` once it is ready, then a newer count whenever a change visible
 * to the caller commits, coalesced per connection. They carry no journal position (cursors are
 * opaque): a client pulls /v1/changes on each, and finds the change there. Authenticated like every
 * /v1 request; keepalive; dropped server-side on demand.
 */

t.teardown(stopOwnCluster);

/** What a refused upgrade rejects with (see connectEvents). */
async function refused(p: Promise<EventStream>): Promise<{ status?: number; body?: { error?: { code?: string; message?: string } } }> {
  try {
    const stream = await p;
    await stream.close();
  } catch (err) {
    return err as { status?: number; body?: { error?: { code?: string } } };
  }
  throw new Error('the upgrade was accepted');
}

/** Resolves once `cond()` holds (polled every 2 ms); rejects after timeoutMs. */
async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

t.test('coalescer: an isolated hint goes out at once, a burst as one message per window carrying the newest seq, quiet resets the window', async (t) => {
  const sent: Array<{ seq: number; at: number }> = [];
  const start = Date.now();
  let wake: (() => void) | undefined;
  const c = new Coalescer(
    (seq) => {
      sent.push({ seq, at: Date.now() - start });
      wake?.();
      return true;
    },
    { minMs: 20, maxMs: 80 },
  );
  t.teardown(() => c.close());
  const next = (n: number) => (sent.length >= n ? Promise.resolve() : new Promise<void>((resolve) => (wake = () => sent.length >= n && resolve())));

  c.offer(3);
  t.same(sent, [], 'nothing before start: the head is the first message');
  c.start(2);
  t.same(sent.map((s) => s.seq), [3], 'start sends the newer of the head and what came meanwhile, at once');
  for (let seq = 4; seq <= 100; seq++) c.offer(seq);
  c.offer(50);
  t.equal(sent.length, 1, 'a burst inside the window sends nothing yet');
  await next(2);
  t.same(sent.map((s) => s.seq), [3, 100], 'the window ends with one message: the newest seq');
  for (let seq = 101; seq <= 110; seq++) c.offer(seq);
  await next(3);
  for (let seq = 111; seq <= 120; seq++) c.offer(seq);
  await next(4);
  const gaps = sent.slice(1).map((s, i) => s.at - sent[i]!.at);
  // Timers never fire early (a late one only makes its own gap longer), so these are lower bounds.
  t.ok(gaps[0]! >= 19 && gaps[1]! >= 39 && gaps[2]! >= 79, `windows double while the burst lasts: 20, 40, 80 ms (gaps ${gaps.join(', ')} ms)`);
  t.same(sent.map((s) => s.seq), [3, 100, 110, 120], 'each window sends its newest seq');
  // After a quiet window the next hint goes out at once again.
  await until(() => c.quiet, 'a quiet window');
  const before = sent.length;
  c.offer(200);
  t.equal(sent.length, before + 1, 'after a quiet window a hint is sent synchronously');
  c.offer(150);
  t.equal(sent.at(-1)!.seq, 200, 'an older seq is never sent after a newer one');
});

t.test('coalescer: a steady trickle (one save per window) keeps the window at its minimum: no change waits for a long window', async (t) => {
  const sent: number[] = [];
  let wake: (() => void) | undefined;
  const c = new Coalescer((seq) => {
    sent.push(seq);
    wake?.();
    return true;
  }, { minMs: 20, maxMs: 1000 });
  t.teardown(() => c.close());
  c.start(0);
  // A dense window first grows the window…
  for (let seq = 1; seq <= 10; seq++) c.offer(seq);
  await new Promise<void>((resolve) => (wake = () => sent.at(-1) === 10 && resolve()));
  // …then one change per window (each right after the previous message) brings it back down.
  const delays: number[] = [];
  for (let seq = 11; seq <= 20; seq++) {
    const at = Date.now();
    c.offer(seq);
    await new Promise<void>((resolve) => (wake = () => sent.at(-1) === seq && resolve()));
    delays.push(Date.now() - at);
  }
  // The growth after the dense window is 40 ms at most; after that every window is the minimum.
  t.ok(delays.slice(2).every((d) => d < 200), `each trickled change goes out within a short window (${delays.join(', ')} ms; the longest window is 1000 ms)`);
});

t.test('coalescer: a connection that cannot take a message now gets the newest seq at a later window', async (t) => {
  let open = false;
  const sent: number[] = [];
  let wake: (() => void) | undefined;
  const c = new Coalescer((seq) => {
    if (!open) return false;
    sent.push(seq);
    wake?.();
    return true;
  }, { minMs: 10, maxMs: 40 });
  t.teardown(() => c.close());
  open = true;
  c.start(1);
  open = false;
  c.offer(2);
  c.offer(3);
  t.same(sent, [1], 'skipped while the buffer is full');
  open = true;
  await new Promise<void>((resolve) => (wake = resolve));
  t.same(sent, [1, 3], 'then the newest only');
});

for (const engine of testEngines()) {
  t.test(`server push [${engine}]`, async (t) => {
    const backend: TestBackend = await startTestBackend(engine, { events: { ping_interval_ms: 300 } });
    t.teardown(() => backend.close());
    let users = 0;
    const newUser = (): Promise<TestUser> => backend.addUser(`user${++users}`);
    /** A connection closed when the subtest `t` ends. */
    const open = async (t: Test, token: string, opts?: Parameters<typeof connectEvents>[2]): Promise<EventStream> => {
      const stream = await connectEvents(backend.url, token, opts);
      t.teardown(() => stream.close());
      return stream;
    };
    /** A second device of the user, with its own client. */
    const secondDevice = async (t: Test, user: TestUser, name = 'laptop'): Promise<{ id: string; token: string; client: StratusClient }> => {
      const created = await user.client.createDevice(name);
      const client = new StratusClient({ server: backend.url, token: created.token });
      t.teardown(() => client.close());
      return { id: created.device.id, token: created.token, client };
    };

    t.test('the first message says the connection is ready; a commit by another device arrives as the next hint, and the feed already holds it', async (t) => {
      const user = await newUser();
      const laptop = await secondDevice(t, user);
      const root = await user.client.root();
      await user.client.create({ parent_id: root.id, name: 'before', kind: 'dir' });
      const head = (await user.client.changesHead()).cursor;

      const events = await open(t, user.token);
      t.equal(await events.waitFor(0), 0, 'first message: hint 0');
      t.same(events.messages, [{ hint: 0 }], 'exactly {"hint": 0}: no journal position in it');

      const created = await laptop.client.create({ parent_id: root.id, name: 'from laptop', kind: 'file' });
      t.equal(await events.waitFor(1), 1, 'the change: hint 1');
      // Pulled the moment the hint arrived: the hint was published after the commit.
      const page = await user.client.changes(head);
      t.same(page.changes.map((c) => c.id), [created.id], 'the change the hint announced is in the feed');
      t.equal(page.cursor, (await user.client.changesHead()).cursor, 'and that pull reached the head');
      t.same(events.messages, [{ hint: 0 }, { hint: 1 }], 'one message for one change');
    });

    t.test('an isolated change is pushed within milliseconds, to every connection of the user (also the device that made it)', async (t) => {
      const user = await newUser();
      const laptop = await secondDevice(t, user);
      const root = await user.client.root();
      const a = await open(t, user.token);
      const b = await open(t, laptop.token);
      await a.waitFor(0);
      await b.waitFor(0);
      const t0 = performance.now();
      await laptop.client.create({ parent_id: root.id, name: 'x', kind: 'dir' });
      await Promise.all([a.waitFor(1), b.waitFor(1)]);
      const ms = performance.now() - t0;
      t.ok(ms < 1000, `request + push took ${ms.toFixed(1)} ms`);
    });

    t.test("another user's changes never produce a message on my connection (invariant 8)", async (t) => {
      const me = await newUser();
      const other = await newUser();
      const mine = await open(t, me.token);
      const theirs = await open(t, other.token);
      await mine.waitFor(0);
      await theirs.waitFor(0);

      const otherRoot = await other.client.root();
      for (let i = 0; i < 5; i++) await other.client.create({ parent_id: otherRoot.id, name: `secret ${i}`, kind: 'file' });
      t.equal(await theirs.waitFor(5), 5, 'their connection counted their five changes');

      // A change of mine after theirs: on one connection messages arrive in order, so had any of
      // theirs reached me it would be here before this one.
      const myRoot = await me.client.root();
      await me.client.create({ parent_id: myRoot.id, name: 'mine', kind: 'file' });
      await mine.waitFor(1);
      t.same(mine.messages, [{ hint: 0 }, { hint: 1 }], 'my connection got its first message and my change, nothing of theirs (not even in its count)');
    });

    t.test('a bad, missing or revoked token gets 401 with the error body and no connection; other paths are refused', async (t) => {
      const user = await newUser();
      const laptop = await secondDevice(t, user);
      const before = backend.events.connections();

      const bad = await refused(connectEvents(backend.url, 'stx_not-a-token'));
      t.equal(bad.status, 401, 'unknown token: 401');
      t.equal(bad.body?.error?.code, 'unauthorized');

      const malformed = await refused(connectEvents(backend.url, 'two words'));
      t.equal(malformed.status, 401, 'malformed header: 401');
      t.match(malformed.body?.error?.message, /malformed Authorization header/);

      await user.client.revokeDevice(laptop.id);
      const revoked = await refused(connectEvents(backend.url, laptop.token));
      t.equal(revoked.status, 401, 'revoked token: 401');
      t.same(revoked.body, { error: { code: 'unauthorized', message: 'invalid or revoked token' } }, 'nothing else in the body');

      const unauthWrongPath = await refused(connectEvents(backend.url, 'stx_nope', { path: '/v1/nope' }));
      t.equal(unauthWrongPath.status, 401, 'an unauthenticated caller learns nothing about which /v1 paths exist');
      const wrongPath = await refused(connectEvents(backend.url, user.token, { path: '/v1/event' }));
      t.equal(wrongPath.status, 404, 'authenticated, another /v1 path: 404');
      t.equal(wrongPath.body?.error?.code, 'not_found');
      const outside = await refused(connectEvents(backend.url, user.token, { path: '/healthz' }));
      t.equal(outside.status, 404, 'outside /v1: 404');

      const plain = await backend.fetch('/v1/events', { token: user.token });
      t.equal(plain.status, 426, 'a plain GET of the events path: 426 Upgrade Required');
      t.match(await plain.json(), { error: { code: 'bad_request', message: /WebSocket/ } });

      t.equal(backend.events.connections(), before, 'no connection was made');
    });

    t.test('a connection of a device revoked after it connected is closed by the server', async (t) => {
      const user = await newUser();
      const laptop = await secondDevice(t, user);
      const events = await open(t, laptop.token);
      await events.waitFor(0);
      await user.client.revokeDevice(laptop.id);
      t.equal(await events.closed, 1008, 'closed with 1008 (policy violation) at the next keepalive');
    });

    t.test('revocation closes the device\'s open connection at once, not at the next keepalive, and it hears nothing after', async (t) => {
      // Keepalive far beyond the wait below: only the revocation itself can close the connection in time.
      const slow = await startTestBackend(engine, { events: { ping_interval_ms: 600_000 } });
      t.teardown(() => slow.close());
      const user = await slow.addUser('revoker');
      const created = await user.client.createDevice('laptop');
      const laptop = await connectEvents(slow.url, created.token);
      t.teardown(() => laptop.close());
      const other = await connectEvents(slow.url, user.token);
      t.teardown(() => other.close());
      await laptop.waitFor(0);
      await other.waitFor(0);
      await user.client.revokeDevice(created.device.id);
      t.equal(await within(laptop.closed, 5_000, 'the revoked connection closed'), 1008, 'closed with 1008 (policy violation)');
      const seen = laptop.messages.length;
      await user.client.create({ parent_id: (await user.client.root()).id, name: 'after', kind: 'file' });
      await other.waitFor(1);
      t.equal(laptop.messages.length, seen, 'no hint reached it after the revocation');
      t.equal(other.ws.readyState, other.ws.OPEN, "the user's other device stays connected");
    });

    t.test('one user cannot hold more than max_connections_per_user event connections: the next is refused with 429', async (t) => {
      const capped = await startTestBackend(engine, { events: { max_connections_per_user: 3 } });
      t.teardown(() => capped.close());
      const greedy = await capped.addUser('greedy');
      const other = await capped.addUser('other');
      for (let i = 0; i < 3; i++) t.teardown((await connectEvents(capped.url, greedy.token)).close);
      const refusedUpgrade = await refused(connectEvents(capped.url, greedy.token));
      t.equal(refusedUpgrade.status, 429, 'the fourth: 429');
      t.equal(refusedUpgrade.body?.error?.code, 'too_many_requests');
      const fine = await connectEvents(capped.url, other.token);
      t.teardown(fine.close);
      t.equal(fine.ws.readyState, fine.ws.OPEN, 'another user still connects');
    });

    t.test('keepalive: a connection that does not answer pings is terminated', async (t) => {
      const user = await newUser();
      const silent = await open(t, user.token, { autoPong: false });
      const answering = await open(t, user.token);
      await silent.waitFor(0);
      await answering.waitFor(0);
      t.equal(await silent.closed, 1006, 'dropped without a close handshake after a missed pong');
      t.equal(answering.ws.readyState, answering.ws.OPEN, 'a connection that answers stays open');
    });

    t.test('messages from the client are ignored and change nothing; an oversized frame closes the connection', async (t) => {
      const user = await newUser();
      const events = await open(t, user.token);
      await events.waitFor(0);
      const snapshot = await backend.snapshot();
      events.ws.send('{"hint": 999999, "seq": 999999, "hello": true}');
      events.ws.send(Buffer.from([0xff, 0x00]));
      const root = await user.client.root();
      await user.client.create({ parent_id: root.id, name: 'after chatter', kind: 'dir' });
      t.equal(await events.waitFor(1), 1, 'hints still flow, counted as before');
      const big = await open(t, user.token);
      await big.waitFor(0);
      const before = await backend.snapshot();
      big.ws.send(Buffer.alloc(64 * 1024));
      t.equal(await big.closed, 1009, 'a frame over the limit: 1009 (message too big)');
      t.equal(await backend.snapshot(), before, 'the database and the store are unchanged');
      t.not(snapshot, before, '(the create in between did change them)');
    });

    t.test('a burst of 1000 commits: every connection hears of the last one, in a handful of messages, and a pull then has them all', async (t) => {
      const user = await newUser();
      const laptop = await secondDevice(t, user);
      const root = await user.client.root();
      const connections = [await open(t, user.token), await open(t, user.token), await open(t, laptop.token)];
      for (const c of connections) await c.waitFor(0);
      const head = (await user.client.changesHead()).cursor;
      const dir = await user.client.create({ parent_id: root.id, name: 'burst', kind: 'dir' });

      const N = 1000;
      let next = 0;
      const worker = async (client: StratusClient) => {
        while (next < N) {
          const i = next++;
          await client.create({ parent_id: dir.id, name: `f${i}`, kind: 'file' });
        }
      };
      const t0 = performance.now();
      await Promise.all([worker(user.client), worker(user.client), worker(laptop.client), worker(laptop.client)]);
      const burstMs = performance.now() - t0;
      const final = (await user.client.changesHead()).cursor;
      t.pass(`${N} commits made (${burstMs.toFixed(0)} ms)`);

      // Each commit visible to a connection counts one hint on it: the message counting the last
      // commit (N + 1: the folder and N files) went out after that commit.
      for (const [i, c] of connections.entries()) {
        t.equal(await c.waitFor(N + 1), N + 1, `connection ${i} heard of the last commit: its count reached ${N + 1}`);
        t.ok(c.hints.length <= coalescedBound(burstMs), `connection ${i}: ${c.hints.length} messages for ${N + 1} commits (at most ${coalescedBound(burstMs)} for ${burstMs.toFixed(0)} ms)`);
        t.ok(c.hints.every((h, j) => j === 0 || h > c.hints[j - 1]!), `connection ${i}: hints only increase`);
      }
      // A pull on the last hint finds every change, and ends at the head.
      const seen = new Set<string>();
      let cursor = head;
      for (;;) {
        const page = await user.client.changes(cursor);
        for (const c of page.changes) seen.add(c.id);
        cursor = page.cursor;
        if (!page.has_more) break;
      }
      t.equal(seen.size, N + 1, 'the pull has the folder and every file');
      t.equal(cursor, final, 'and ends at the head');
    });

    t.test('disconnectAll() closes every socket server-side; clients can connect again', async (t) => {
      const user = await newUser();
      const other = await newUser();
      const streams = [await open(t, user.token), await open(t, user.token), await open(t, other.token)];
      for (const s of streams) await s.waitFor(0);
      await until(() => backend.events.connections() >= 3, 'the server to count the connections');
      backend.events.disconnectAll();
      const codes = await Promise.all(streams.map((s) => s.closed));
      t.same(codes, [1006, 1006, 1006], 'every client sees its connection drop');
      await until(() => backend.events.connections() === 0, 'the server to forget the connections');
      t.equal(backend.events.connections(), 0);

      const again = await open(t, user.token);
      t.equal(await again.waitFor(0), 0, 'a new connection starts again');
      t.same(again.messages, [{ hint: 0 }], 'with {"hint": 0}');
    });
  });
}
