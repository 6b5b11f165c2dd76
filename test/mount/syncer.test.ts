import { EventEmitter } from 'node:events';
import fs from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { WebSocketServer, type WebSocket } from 'ws';
import { StateStore } from '../../mount/state/store.js';
import { EventsClient } from '../../mount/sync/events.js';
import { KernelRefresher } from '../../mount/sync/kernel-refresh.js';
import { Syncer, type HintSource } from '../../mount/sync/syncer.js';
import { Tree } from '../../mount/node/tree.js';
import { eventsUrl, StratusClient } from '../../protocol/client.js';
import { commitRandomBlocks, startTestBackend, type TestBackend } from '../helpers/backend.js';
import { Faults } from '../helpers/vfs.js';

/**
 * Client catch-up (DESIGN §5, §6): the syncer pulls /v1/changes into the tree on hints, on every
 * (re)connect and after failures; the kernel refresher is told which files changed; the events
 * client reconnects with backoff. Over a real in-process server, without FUSE; the hint channel is
 * a stand-in the test drives, or a small `ws` server inside the test. No sleeps: every wait is for
 * an event, with a timeout.
 */

let backend: TestBackend;
let users = 0;

t.before(async () => {
  backend = await startTestBackend('sqlite');
});
t.teardown(() => backend?.close());

/** A hint channel the test opens, closes and hints through (hints count up, as the server's do). */
class FakeHints extends EventEmitter implements HintSource {
  connected = false;
  wakes = 0;
  hints = 0;
  wake(): void {
    this.wakes++;
  }
  connect(): void {
    this.connected = true;
    this.emit('connected');
  }
  disconnect(): void {
    this.connected = false;
    this.emit('disconnected', 'test');
  }
  hint(): void {
    this.emit('hint', ++this.hints);
  }
}

/** Resolves with the args of the first `event` for which `pred` holds (rejects after `ms`). */
function waitFor<A extends unknown[]>(emitter: EventEmitter, event: string, pred: (...args: A) => boolean = () => true, ms = 10_000): Promise<A> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, on);
      reject(new Error(`no matching ${event} within ${ms} ms`));
    }, ms);
    const on = (...args: unknown[]) => {
      if (!pred(...(args as A))) return;
      clearTimeout(timer);
      emitter.off(event, on);
      resolve(args as A);
    };
    emitter.on(event, on);
  });
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)))]).finally(() =>
    clearTimeout(timer),
  );
}

interface Drive {
  tree: Tree;
  syncer: Syncer;
  hints: FakeHints;
  /** Another device of the same user, writing through the API. */
  other: StratusClient;
  /** The client the syncer uses (maybe wrapped). */
  client: StratusClient;
  rootId: string;
}

/**
 * A fresh user, the mount's tree on a fresh state folder (root listed) and a syncer over it, fed
 * by a FakeHints; everything closed at teardown.
 */
async function drive(t: Test, opts: { wrap?: (c: StratusClient) => StratusClient; syncer?: Partial<ConstructorParameters<typeof Syncer>[0]> } = {}): Promise<Drive> {
  const user = await backend.addUser(`sync${++users}`);
  const { token } = await user.client.createDevice('other');
  const other = new StratusClient({ server: backend.url, token });
  const base = new StratusClient({ server: backend.url, token: user.token });
  const client = opts.wrap ? opts.wrap(base) : base;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-sync-'));
  const store = await StateStore.open(path.join(dir, 'state'));
  const tree = new Tree(store, client);
  const cursor = await tree.load();
  await tree.ensureListed(tree.root());
  const hints = new FakeHints();
  const syncer = new Syncer({ client, tree, cursor: cursor!, hints, retryMinMs: 20, retryMaxMs: 200, ...opts.syncer });
  t.teardown(async () => {
    await syncer.close();
    await tree.flush();
    await store.close();
    await Promise.all([other.close(), base.close()]);
    await fs.rm(dir, { recursive: true, force: true });
  });
  return { tree, syncer, hints, other, client, rootId: tree.rootSid };
}

/**
 * A client wrapper whose next `changes` call, once armed, gets its page and then holds the reply
 * until released: changes made meanwhile are not in that page.
 */
function heldPage(): { wrap: (c: StratusClient) => StratusClient; arm(): { atGate: Promise<void>; release: () => void } } {
  let gate: { reached: () => void; open: Promise<void> } | undefined;
  return {
    wrap: (c) =>
      new Proxy(c, {
        get(target, prop, receiver) {
          if (prop !== 'changes') return Reflect.get(target, prop, receiver) as unknown;
          return async (cursor: string | undefined, limit?: number) => {
            const page = await target.changes(cursor, limit);
            if (gate) {
              const g = gate;
              gate = undefined;
              g.reached();
              await g.open;
            }
            return page;
          };
        },
      }),
    arm() {
      let release = () => undefined as void;
      let reached = () => undefined as void;
      const atGate = new Promise<void>((r) => (reached = r));
      gate = { reached, open: new Promise<void>((r) => (release = r)) };
      return { atGate, release };
    },
  };
}

/** Creates a file with content on the server through `client`; returns its id. */
async function remoteFile(client: StratusClient, parentId: string, name: string, sizes = [100]): Promise<string> {
  const node = await client.create({ parent_id: parentId, name, kind: 'file' });
  await commitRandomBlocks(client, node.id, 0, sizes);
  return node.id;
}

const head = async (c: StratusClient) => (await c.changesHead()).cursor;

t.test('a change made by another device appears in the tree after a hint', async (t) => {
  const d = await drive(t);
  d.syncer.start();
  d.hints.connect();
  await d.syncer.idle();
  const pulls = d.syncer.pulls;

  const id = await remoteFile(d.other, d.rootId, 'from-laptop.txt', [1234]);
  t.equal(d.tree.child(d.tree.rootIno, 'from-laptop.txt'), undefined, 'not in the tree before any hint');
  const applied = waitFor<[unknown[]]>(d.syncer, 'applied');
  d.hints.hint();
  await applied;
  await d.syncer.idle();
  const node = d.tree.child(d.tree.rootIno, 'from-laptop.txt');
  t.equal(node?.sid, id, 'the new file is in the tree');
  t.equal(node?.size, 1234, 'with the size of its committed version');
  const cursor = d.syncer.cursor;
  t.equal(cursor, await head(d.other), 'the cursor reached the head');
  t.equal(d.syncer.pulls, pulls + 1, 'one pull for the hint');
  t.ok(d.syncer.lastSyncAt, 'lastSyncAt is set');

  // A hint tells nothing of where the journal is: each one costs a pull, which finds nothing new here.
  let applied2 = 0;
  d.syncer.on('applied', () => applied2++);
  d.hints.hint();
  await d.syncer.idle();
  t.equal(d.syncer.pulls, pulls + 2, 'a hint with nothing new behind it: one pull');
  t.equal(applied2, 0, 'that applies nothing');
  t.equal(d.syncer.cursor, cursor, 'and leaves the cursor where it was');
});

t.test('a missed hint is made up by the pull on reconnect', async (t) => {
  const d = await drive(t);
  d.syncer.start();
  d.hints.connect();
  await d.syncer.idle();

  d.hints.disconnect();
  await d.syncer.idle(); // the probe pull a disconnect makes
  await remoteFile(d.other, d.rootId, 'while-away.txt');
  await d.syncer.idle();
  t.equal(d.tree.child(d.tree.rootIno, 'while-away.txt'), undefined, 'no hint while disconnected: not there yet');
  t.notOk(d.syncer.connected, 'the syncer reports the channel down');

  const applied = waitFor(d.syncer, 'applied');
  d.hints.connect();
  await applied;
  t.ok(d.tree.child(d.tree.rootIno, 'while-away.txt'), 'the pull on reconnect brought the change');
  t.ok(d.syncer.connected, 'connected again');
});

t.test('a pull that fails (server unreachable) is retried and converges once the server is back', async (t) => {
  const faults = new Faults();
  const d = await drive(t, { wrap: faults.wrap });
  d.syncer.start();
  d.hints.connect();
  await d.syncer.idle();
  t.ok(d.syncer.online, 'online after the first pull');

  faults.offline.add('changes');
  const failed = waitFor(d.syncer, 'status', () => d.syncer.lastError !== undefined);
  d.hints.disconnect(); // the server went away: its WebSocket dropped, the probe pull fails
  await failed;
  t.match(d.syncer.lastError, /ECONNREFUSED/, 'the failure is kept for status');
  t.notOk(d.syncer.online, 'offline');
  await remoteFile(d.other, d.rootId, 'during-outage.txt');
  // Retries go on by themselves (with backoff): wait for two more failed attempts.
  const before = faults.calls.get('changes') ?? 0;
  await within(
    (async () => {
      while ((faults.calls.get('changes') ?? 0) < before + 2) await waitFor(d.syncer, 'status');
    })(),
    10_000,
    'retries',
  );
  t.equal(d.tree.child(d.tree.rootIno, 'during-outage.txt'), undefined, 'nothing applied while failing');

  const applied = waitFor(d.syncer, 'applied');
  faults.offline.delete('changes');
  await applied; // a scheduled retry, no hint nor reconnect
  t.ok(d.tree.child(d.tree.rootIno, 'during-outage.txt'), 'the retry brought the change');
  t.equal(d.syncer.lastError, undefined, 'the error is cleared');
  t.ok(d.syncer.online, 'online again');
  t.ok(d.hints.wakes > 0, 'and the hint channel is told to reconnect now');
});

t.test('a reconnect ends the wait of a failed pull at once', async (t) => {
  const faults = new Faults();
  // A retry delay far beyond the test's timeout: only the reconnect can bring the change in time.
  const d = await drive(t, { wrap: faults.wrap, syncer: { retryMinMs: 60_000, retryMaxMs: 60_000 } });
  d.syncer.start();
  await d.syncer.idle();
  faults.offline.add('changes');
  await remoteFile(d.other, d.rootId, 'x.txt');
  const failed = waitFor(d.syncer, 'status', () => d.syncer.lastError !== undefined);
  d.hints.hint();
  await failed;
  faults.offline.delete('changes');
  const applied = waitFor(d.syncer, 'applied', () => true, 5_000);
  d.hints.connect();
  await applied;
  t.ok(d.tree.child(d.tree.rootIno, 'x.txt'), 'pulled on reconnect without waiting for the retry');
});

t.test('hints during a pull cause exactly one more pull, not one per hint', async (t) => {
  const held = heldPage();
  const d = await drive(t, { wrap: held.wrap });
  d.syncer.start();
  d.hints.connect();
  await d.syncer.idle();

  await remoteFile(d.other, d.rootId, 'first.txt');
  const { atGate, release } = held.arm();
  const pulls = d.syncer.pulls;
  d.hints.hint();
  await within(atGate, 10_000, 'the pull reaching the gate');

  for (const name of ['a.txt', 'b.txt', 'c.txt']) {
    await remoteFile(d.other, d.rootId, name);
    d.hints.hint();
  }
  d.hints.connect(); // a reconnect during the pull too
  release();
  await d.syncer.idle();
  t.equal(d.syncer.pulls, pulls + 2, 'the held pull and one more');
  for (const name of ['first.txt', 'a.txt', 'b.txt', 'c.txt']) t.ok(d.tree.child(d.tree.rootIno, name), `${name} is in the tree`);
  t.equal(d.syncer.cursor, await head(d.other), 'the cursor reached the head');
});

t.test('a page requested before a local rename does not undo it: the node\'s current state is fetched instead', async (t) => {
  const held = heldPage();
  const d = await drive(t, { wrap: held.wrap });
  d.syncer.start();
  d.hints.connect();
  await d.syncer.idle();
  const id = await remoteFile(d.other, d.rootId, 'old-name.txt');
  const { atGate, release } = held.arm();
  d.hints.hint();
  await within(atGate, 10_000, 'the pull reaching the gate');
  // What the Vfs does for a rename made on this mount while that page is held.
  const renamed = await d.client.update(id, { name: 'new-name.txt' });
  d.tree.applyServer(renamed);
  release();
  await d.syncer.idle();
  t.equal(d.tree.child(d.tree.rootIno, 'new-name.txt')?.sid, id, 'the local rename stands after the older page is applied');
  t.equal(d.tree.child(d.tree.rootIno, 'old-name.txt'), undefined, 'the old name did not come back');
  t.equal(d.tree.bySidLive(id)?.size, 100, 'and the node has the content the page brought');
});

t.test('the kernel refresher is asked for files whose attributes changed (content or mode) only, by their mount paths', async (t) => {
  const d = await drive(t);
  const docs = await d.other.create({ parent_id: d.rootId, name: 'docs', kind: 'dir' });
  const changed = await remoteFile(d.other, docs.id, 'changed.txt', [10]);
  const untouched = await remoteFile(d.other, d.rootId, 'untouched.txt', [10]);
  const chmodded = await remoteFile(d.other, d.rootId, 'chmodded.txt', [10]);
  const queued = await remoteFile(d.other, d.rootId, 'queued.txt', [10]);
  d.syncer.start();
  await d.syncer.idle();
  await d.tree.ensureListed(d.tree.child(d.tree.rootIno, 'docs')!);
  t.ok(d.tree.bySidLive(changed) && d.tree.bySidLive(untouched) && d.tree.bySidLive(queued), 'the files are known to the mount');

  const touched: [string, number][] = [];
  const localContent = new Set([d.tree.bySidLive(queued)!.ino]);
  const refresher = new KernelRefresher({
    mountpoint: '/mnt/drive',
    tree: d.tree,
    skip: (ino) => localContent.has(ino),
    touch: async (p, s) => {
      touched.push([p, s]);
    },
  });
  d.syncer.on('applied', (_c, files) => refresher.refresh(files));

  await commitRandomBlocks(d.other, changed, 1, [20]);
  await commitRandomBlocks(d.other, changed, 2, [30]); // twice: one refresh
  await commitRandomBlocks(d.other, queued, 1, [20]);
  await d.other.create({ parent_id: d.rootId, name: 'new-dir', kind: 'dir' });
  await remoteFile(d.other, d.rootId, 'new.txt');
  await d.other.update(chmodded, { mode: 0o600 });
  await d.other.update(untouched, { mtime: (await d.other.node(untouched)).mtime });
  d.hints.hint();
  await d.syncer.idle();
  await refresher.idle();

  const node = d.tree.bySidLive(changed)!;
  t.equal(node.size, 30, 'the tree has the newest version');
  const mode = d.tree.bySidLive(chmodded)!;
  t.same(
    touched.sort(),
    [
      ['/mnt/drive/chmodded.txt', (mode.mtime + 0.5) / 1000],
      ['/mnt/drive/docs/changed.txt', (node.mtime + 0.5) / 1000],
    ],
    'the changed file once, and the one whose mode changed (the kernel caches modes too), with mtimes in seconds (+0.5 ms: the binding rounds down to whole ms); not the one updated to what it was, nor new nodes, nor a file with local content',
  );
});

t.test('the kernel refresher touches at most `concurrency` files at once and each queued node once', async (t) => {
  const nodes = new Map<number, { ino: number; parent: number | null; name: string; kind: 'file' | 'dir'; mtime: number }>();
  nodes.set(1, { ino: 1, parent: null, name: '', kind: 'dir', mtime: 0 });
  for (let i = 0; i < 20; i++) nodes.set(100 + i, { ino: 100 + i, parent: 1, name: `f${i}`, kind: 'file', mtime: 1000 * i });
  let active = 0;
  let peak = 0;
  const calls: string[] = [];
  const waiting: (() => void)[] = [];
  const refresher = new KernelRefresher({
    mountpoint: '/m',
    tree: { rootIno: 1, get: (ino: number) => nodes.get(ino) as never, pathOf: (n) => `/${n.name}` },
    concurrency: 3,
    touch: (p) => {
      calls.push(p);
      active++;
      peak = Math.max(peak, active);
      return new Promise<void>((resolve) => waiting.push(() => (active--, resolve())));
    },
  });
  refresher.refresh(nodes.keys());
  refresher.refresh([119, 119, 999]);
  await new Promise((r) => setImmediate(r));
  t.equal(active, 3, 'three in flight');
  t.equal(calls.length, 3, 'the others wait their turn');
  const done = refresher.idle();
  // Each release lets the next start: keep releasing until all went through.
  await within(
    (async () => {
      while (!(calls.length === 20 && active === 0)) {
        while (waiting.length) waiting.shift()!();
        await new Promise((r) => setImmediate(r));
      }
    })(),
    5_000,
    'all touches',
  );
  await done;
  t.equal(peak, 3, 'never more than three at once');
  t.equal(calls.length, 20, 'each file once, the folder and unknown ids not at all');
  t.equal(new Set(calls).size, 20, 'no file twice');
});

t.test('the kernel refresher makes the kernel forget a vacated name by dropping it through the mount (told to expect it), of the kind the kernel knows, also when another node holds the name by then', async (t) => {
  type N = { ino: number; parent: number | null; name: string; kind: 'file' | 'dir'; mtime: number };
  const nodes = new Map<number, N>([[1, { ino: 1, parent: null, name: '', kind: 'dir', mtime: 0 }]]);
  const dropped: string[] = [];
  const touched: string[] = [];
  const expected: string[] = [];
  const refresher = new KernelRefresher({
    mountpoint: '/m',
    tree: { rootIno: 1, get: (ino: number) => nodes.get(ino) as never, pathOf: (n) => `/${n.name}` },
    drop: async (p, kind) => {
      dropped.push(`${kind} ${p}`);
    },
    touch: async (p) => {
      touched.push(p);
    },
    expectForget: { begin: (p) => expected.push(`begin ${p}`), end: (p) => expected.push(`end ${p}`) },
  });
  refresher.forget('/gone.txt', 'file');
  refresher.forget('/old-folder', 'dir');
  // Taken again by a node of another kind by then (tar's placeholder file replaced by a link): dropped as the file the kernel knows.
  refresher.forget('/taken', 'file');
  nodes.set(7, { ino: 7, parent: 1, name: 'taken', kind: 'dir', mtime: 5000 });
  await refresher.idle();
  t.same(dropped.sort(), ['dir /m/old-folder', 'file /m/gone.txt', 'file /m/taken'], 'unlink for a file, rmdir for a folder, through the mountpoint');
  t.same(expected.filter((e) => e.startsWith('begin')).sort(), ['begin /gone.txt', 'begin /old-folder', 'begin /taken'], 'each drop announced to the Vfs');
  t.equal(expected.filter((e) => e.startsWith('end')).length, 3, 'and its end told');
  t.same(touched, [], 'nothing touched');

  // A file with local content is passed over, and refreshed once that is settled.
  const busy: N = { ino: 8, parent: 1, name: 'busy.txt', kind: 'file', mtime: 1000 };
  nodes.set(8, busy);
  const local = new Set([8]);
  const r2 = new KernelRefresher({
    mountpoint: '/m',
    tree: { rootIno: 1, get: (ino: number) => nodes.get(ino) as never, pathOf: (n) => `/${n.name}` },
    skip: (ino) => local.has(ino),
    touch: async (p) => {
      touched.push(p);
    },
  });
  touched.length = 0;
  r2.refresh([8]);
  await r2.idle();
  t.same(touched, [], 'not while it has local content');
  local.delete(8);
  r2.settled(8);
  await r2.idle();
  t.same(touched, ['/m/busy.txt'], 'refreshed once settled');
  r2.settled(8);
  await r2.idle();
  t.same(touched, ['/m/busy.txt'], 'and only once');
});

// --- the events client against a small ws server --------------------------------------------------

interface WsServer {
  url: string;
  wss: WebSocketServer;
  /** Upgrade requests seen. */
  requests: IncomingMessage[];
  sockets: WebSocket[];
  close(): Promise<void>;
}

async function wsServer(t: Test, onConnection: (ws: WebSocket, req: IncomingMessage) => void, verify?: () => boolean): Promise<WsServer> {
  const requests: IncomingMessage[] = [];
  const sockets: WebSocket[] = [];
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    verifyClient: (info, cb) => {
      requests.push(info.req);
      const ok = verify ? verify() : true;
      cb(ok, ok ? undefined : 503);
    },
  });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  wss.on('connection', (ws, req) => {
    sockets.push(ws);
    onConnection(ws, req);
  });
  const { port } = wss.address() as { port: number };
  const close = async () => {
    for (const ws of wss.clients) ws.terminate();
    await new Promise<void>((r) => wss.close(() => r()));
  };
  t.teardown(close);
  return { url: `http://127.0.0.1:${port}`, wss, requests, sockets, close };
}

t.test('eventsUrl turns the server URL into its /v1/events WebSocket URL', async (t) => {
  t.equal(eventsUrl('http://127.0.0.1:7420'), 'ws://127.0.0.1:7420/v1/events');
  t.equal(eventsUrl('https://drive.example.com/'), 'wss://drive.example.com/v1/events');
  t.equal(eventsUrl('https://example.com/stratus/'), 'wss://example.com/stratus/v1/events', 'a path prefix is kept');
});

t.test('the events client sends its bearer token, reports connect, hints and disconnect', async (t) => {
  const srv = await wsServer(t, (ws) => {
    ws.send(JSON.stringify({ hint: 0 }));
    ws.send('not json');
    ws.send(JSON.stringify({ seq: 7 })); // what a server before namespaces sent
    ws.send(JSON.stringify({ hint: -1 }));
    ws.send(JSON.stringify({ hint: 3 }));
  });
  const ev = new EventsClient({ server: srv.url, token: 'stx_secret', minDelayMs: 10, jitter: 0 });
  t.teardown(() => ev.close());
  const connected = waitFor(ev, 'connected');
  const hints: number[] = [];
  const last = waitFor<[number]>(ev, 'hint', (n) => n === 3);
  ev.on('hint', (n: number) => hints.push(n));
  ev.start();
  await connected;
  t.ok(ev.connected, 'connected');
  await last;
  t.same(hints, [0, 3], 'hints in order; an unknown message (not JSON, an old {seq}, a bad count) is ignored');
  t.equal(srv.requests[0]?.url, '/v1/events', 'to /v1/events');
  t.equal(srv.requests[0]?.headers.authorization, 'Bearer stx_secret', 'with the bearer token');

  const down = waitFor(ev, 'disconnected');
  const back = waitFor(ev, 'connected');
  srv.sockets[0]!.close();
  await down;
  t.notOk(ev.connected, 'disconnected');
  await back;
  t.equal(srv.requests.length, 2, 'reconnected by itself');
});

t.test('the events client reconnects with growing delays and stops on close()', async (t) => {
  let accept = false;
  const srv = await wsServer(t, () => undefined, () => accept);
  const ev = new EventsClient({ server: srv.url, token: 't', minDelayMs: 10, maxDelayMs: 80, jitter: 0 });
  const delays: number[] = [];
  ev.on('reconnecting', (ms: number) => delays.push(ms));
  const timersBefore = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  const sixth = waitFor(ev, 'reconnecting', () => delays.length >= 6);
  ev.start();
  await sixth;
  t.same(delays.slice(0, 6), [10, 20, 40, 80, 80, 80], 'doubling from the first delay up to the cap');

  accept = true;
  await waitFor(ev, 'connected');
  t.ok(ev.connected, 'connects once the server accepts');

  await ev.close();
  t.notOk(ev.connected, 'closed');
  const attempts = srv.requests.length;
  t.equal(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length, timersBefore, 'no timer left behind');
  t.equal(srv.requests.length, attempts, 'no attempt after close');
});

t.test('wake() ends the reconnect wait of the events client at once', async (t) => {
  let accept = false;
  const srv = await wsServer(t, () => undefined, () => accept);
  // A first delay far beyond the test's timeout: only wake() can connect in time.
  const ev = new EventsClient({ server: srv.url, token: 't', minDelayMs: 60_000, jitter: 0 });
  t.teardown(() => ev.close());
  const waiting = waitFor(ev, 'reconnecting');
  ev.start();
  await waiting;
  accept = true;
  const connected = waitFor(ev, 'connected', () => true, 5_000);
  ev.wake();
  await connected;
  t.equal(srv.requests.length, 2, 'connected at the second attempt, right away');
});

t.test('reconnect delays carry jitter within ±25 %', async (t) => {
  const srv = await wsServer(t, () => undefined, () => false);
  const ev = new EventsClient({ server: srv.url, token: 't', minDelayMs: 8, maxDelayMs: 8 });
  t.teardown(() => ev.close());
  const delays: number[] = [];
  ev.on('reconnecting', (ms: number) => delays.push(ms));
  const enough = waitFor(ev, 'reconnecting', () => delays.length >= 8);
  ev.start();
  await enough;
  for (const d of delays) t.ok(d >= 6 && d <= 10, `delay ${d} within 8 ms ±25 %`);
});

t.test('a silent connection is taken for dead and replaced; pings keep one alive', async (t) => {
  let pinging = true;
  const srv = await wsServer(t, (ws) => {
    if (!pinging) return;
    const timer = setInterval(() => ws.ping(), 20);
    ws.on('close', () => clearInterval(timer));
  });
  const ev = new EventsClient({ server: srv.url, token: 't', minDelayMs: 10, jitter: 0, deadAfterMs: 150 });
  t.teardown(() => ev.close());
  await new Promise<void>((resolve) => {
    ev.once('connected', () => resolve());
    ev.start();
  });
  // Ten pings spaced 20 ms apart: longer than deadAfterMs, and still the one connection.
  let pings = 0;
  await within(
    new Promise<void>((resolve) =>
      srv.sockets[0]!.on('ping', () => undefined).on('pong', () => {
        if (++pings === 10) resolve();
      }),
    ),
    5_000,
    'ten pongs',
  );
  t.ok(ev.connected, 'a pinged connection stays up');
  t.equal(srv.requests.length, 1, 'no reconnect');

  pinging = false;
  const dropped = waitFor<[string]>(ev, 'disconnected');
  const next = waitFor(ev, 'connected');
  srv.sockets[0]!.terminate();
  await dropped;
  await next; // the second connection: no pings at all
  const dead = waitFor(ev, 'disconnected', () => true, 5_000);
  const third = waitFor(ev, 'connected', () => true, 5_000);
  await dead;
  await third;
  t.equal(srv.requests.length, 3, 'the silent connection was terminated and replaced');
});

// --- against the server's own /v1/events ----------------------------------------------------------

t.test('with the server’s /v1/events: another device’s change reaches the tree, also across a dropped connection', async (t) => {
  const user = await backend.addUser(`sync${++users}`);
  const { token } = await user.client.createDevice('laptop');
  const laptop = new StratusClient({ server: backend.url, token });
  const client = new StratusClient({ server: backend.url, token: user.token });
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-sync-'));
  const store = await StateStore.open(path.join(dir, 'state'));
  const tree = new Tree(store, client);
  const cursor = await tree.load();
  await tree.ensureListed(tree.root());
  const events = new EventsClient({ server: backend.url, token: user.token, minDelayMs: 20, jitter: 0 });
  const syncer = new Syncer({ client, tree, cursor: cursor!, hints: events });
  t.teardown(async () => {
    await events.close();
    await syncer.close();
    await tree.flush();
    await store.close();
    await Promise.all([laptop.close(), client.close()]);
    await fs.rm(dir, { recursive: true, force: true });
  });
  const connected = waitFor(events, 'connected');
  syncer.start();
  events.start();
  await connected;
  await syncer.idle();

  const arrived = waitFor(syncer, 'applied', () => !!tree.child(tree.rootIno, 'hinted.txt'));
  await remoteFile(laptop, tree.rootSid, 'hinted.txt');
  await arrived;
  t.pass('the hint brought the change without any request from the test');

  const dropped = waitFor(events, 'disconnected');
  const back = waitFor(events, 'connected');
  backend.events.disconnectAll();
  await dropped;
  const again = waitFor(syncer, 'applied', () => !!tree.child(tree.rootIno, 'after-drop.txt'));
  await remoteFile(laptop, tree.rootSid, 'after-drop.txt');
  await back;
  await again;
  t.ok(syncer.connected, 'reconnected by itself, and caught up');
});
