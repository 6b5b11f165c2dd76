import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Knex } from 'knex';
import pg from 'pg';
import { Agent } from 'undici';
import { WebSocket } from 'ws';
import { openDatabase } from '../../backend/db/connect.js';
import { addDevice, createUser } from '../../backend/services/accounts.js';
import { eventsUrl, StratusClient } from '../../protocol/client.js';
import { ApiError } from '../../protocol/errors.js';
import { blake3Hex } from '../../protocol/hash.js';
import type { NodeInfo } from '../../protocol/types.js';
import { startThrowawayPostgres } from '../test-postgres.js';
import { startHaproxy, type Balancer } from './balancer.js';
import { parallel, sleep } from './helpers.js';
import { markdownTable, num, pct } from './report.js';
import { startServe } from './serve-process.js';

/**
 * Scale-out under load (issue 13, "Load and fan-out"): three `stratus serve` processes on one
 * throwaway PostgreSQL and one shared block folder, behind HAProxy (scripts/bench/balancer.ts);
 * every request of this driver goes through the balancer.
 *
 * Load: C clients (StratusClient each, 2 connections) loop "new file or edit: check + put one
 * 4 KiB block + commit" for S seconds, first as C users, then as C devices of one user; every
 * acknowledged commit is then looked up through the API (listing, versions, head manifest).
 *
 * Fan-out: N WebSocket clients on GET /v1/events, each a simulated device that pulls
 * /v1/changes with its cursor on every hint (a pull at a time, one more if hinted meanwhile).
 * One commit → hint and pull latency for each device that can see it; a burst of commits →
 * messages per device.
 */

const run = promisify(execFile);
const BLOCK_BYTES = 4096;
/** A load client makes a new file every this many commits, and edits it in between. */
const COMMITS_PER_FILE = 5;
/** A device that has not pulled a change by then counts as missed. */
const ARRIVAL_TIMEOUT_MS = 30_000;
/** Files of a burst: as many commits in flight. */
const BURST_FILES = 16;

export interface ScaleOptions {
  clients: number;
  seconds: number;
  /** WebSocket devices of the per-user fan-out… */
  devices: number;
  /** …as this many devices per user. */
  devicesPerUser: number;
  /** Single commits whose fan-out is timed (one by each of this many users, one after the other). */
  singleCommits: number;
  burst: number;
  /** Members (one device each) of one shared folder; 0: skip that part. */
  shareMembers: number;
  /** The burst into the shared folder (every commit is pulled by every member: smaller). */
  shareBurst: number;
  /** Each section of the report as soon as it is measured (a later failure does not lose it). */
  emit(markdown: string): void;
  log(msg: string): void;
}

interface Setup {
  url: string;
  db: Knex;
  balancer: Balancer;
  backendPorts: number[];
}

export async function benchScale(workDir: string, o: ScaleOptions): Promise<void> {
  const work = await fs.mkdtemp(path.join(workDir, 'scale-'));
  const stops: (() => Promise<unknown>)[] = [];
  try {
    o.log('scale: throwaway PostgreSQL, three backends, HAProxy');
    const cluster = await startThrowawayPostgres();
    stops.push(() => cluster.stop());
    const admin = new pg.Client({ connectionString: cluster.url });
    await admin.connect();
    await admin.query('CREATE DATABASE stratus_scale');
    await admin.end();
    const url = cluster.url.replace(/\/postgres$/, '/stratus_scale');
    const blocks = path.join(work, 'blocks');
    await fs.mkdir(blocks);
    const backendUrls: string[] = [];
    // One after the other: the first one creates the schema.
    for (let i = 0; i < 3; i++) {
      const server = await startServe(['--data', path.join(work, `data-${i}`), '--db', url, '--blocks', blocks]);
      stops.push(() => server.stop());
      backendUrls.push(server.url);
    }
    const hosts = backendUrls.map((u) => new URL(u).host);
    const balancer = await startHaproxy(work, hosts);
    stops.push(() => balancer.stop());
    const db = await openDatabase(url, path.join(work, 'admin'));
    stops.push(() => db.destroy());
    const s: Setup = { url, db, balancer, backendPorts: hosts.map((h) => Number(h.split(':')[1])) };

    const setupLine = `3 \`stratus serve\` processes behind HAProxy (round robin, no stickiness) on one PostgreSQL (throwaway test cluster, fsync off) and one shared block folder; driver, backends, HAProxy and PostgreSQL on one machine (${os.cpus().length} cores, ${os.cpus()[0]?.model.trim() ?? 'unknown CPU'})`;

    const loads: LoadResult[] = [];
    const tag = crypto.randomBytes(2).toString('hex');
    for (const oneUser of [false, true]) {
      const tokens: string[] = [];
      if (oneUser) {
        const first = await createUser(db, `load${tag}-one`, 'c0');
        tokens.push(first.token);
        for (let i = 1; i < o.clients; i++) tokens.push((await addDevice(db, `load${tag}-one`, `c${i}`)).token);
      } else {
        for (let i = 0; i < o.clients; i++) tokens.push((await createUser(db, `load${tag}-${i}`, 'c0')).token);
      }
      o.log(`scale: load, ${o.clients} clients (${oneUser ? `devices of one user` : `${o.clients} users`}) for ${o.seconds} s`);
      const down = downs(balancer);
      loads.push({ ...(await loadRun(s, tokens, oneUser, o.seconds, o.log)), backendDowns: downs(balancer) - down });
    }
    o.emit(renderLoad(loads, o, setupLine));
    o.log(`scale: HAProxy's reasons for marking a backend down so far: ${downReasons(balancer)}`);

    o.log(`scale: fan-out, ${o.devices} devices of ${o.devices / o.devicesPerUser} users`);
    o.emit(renderFan([await fanDevices(s, o, tag)], o, setupLine));
    if (o.shareMembers > 0) {
      o.log(`scale: fan-out, ${o.shareMembers} members of one shared folder`);
      o.emit(renderFan([await fanShare(s, o, tag)], o, setupLine));
    }
    o.emit(`- HAProxy's reasons for marking a backend down in this group: ${downReasons(balancer)} (health check GET /healthz every 200 ms, fall 1; without \`timeout check\` HAProxy allows a check \`inter\` = 200 ms).`);
  } finally {
    for (const stop of stops.reverse()) await stop().catch((err: unknown) => o.log(`scale: stop failed: ${String(err)}`));
    await fs.rm(work, { recursive: true, force: true });
  }
}

/** How often HAProxy has marked a backend down so far (a failed /healthz check: `fall 1`, every 200 ms). */
function downs(balancer: Balancer): number {
  return (balancer.stderr().match(/Server servers\/s\d+ is DOWN/g) ?? []).length;
}

/** HAProxy's reasons for marking backends down (its stderr so far), e.g. "Layer7 timeout: 12". */
function downReasons(balancer: Balancer): string {
  const reasons = new Map<string, number>();
  for (const m of balancer.stderr().matchAll(/is DOWN, reason: ([^,]+)/g)) reasons.set(m[1]!, (reasons.get(m[1]!) ?? 0) + 1);
  return [...reasons].map(([k, v]) => `${k}: ${v}`).join(', ') || 'none';
}

/** `fn`, tried again (up to 20 times, 250 ms apart) after a 5xx or a failure without an HTTP status; each failure counted in `errors`. */
async function retrying<T>(errors: Map<string, number>, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      errors.set(errorKey(err), (errors.get(errorKey(err)) ?? 0) + 1);
      if (attempt >= 20 || (err instanceof ApiError && err.status < 500)) throw err;
      await sleep(250);
    }
  }
}

/* ------------------------------------------------------------------------ */
/* Load                                                                     */
/* ------------------------------------------------------------------------ */

interface Ack {
  client: number;
  nodeId: string;
  version: number;
  hash: string;
}

interface LoadResult {
  oneUser: boolean;
  clients: number;
  seconds: number;
  commits: number;
  creates: number;
  commitMs: number[];
  cycleMs: number[];
  /** "409 stale_version": count; "network ECONNRESET": count */
  errors: Map<string, number>;
  verified: number;
  lost: string[];
  verifySeconds: number;
  /** HAProxy's "backend DOWN" events during the run. */
  backendDowns?: number;
}

function errorKey(err: unknown): string {
  if (err instanceof ApiError) return `${err.status} ${err.code}`;
  // StratusClient parses every body as JSON: a balancer's HTML error page (503) surfaces as this.
  if (err instanceof SyntaxError) return 'non-JSON answer (a balancer error page)';
  const e = err as { code?: string; message?: string };
  return `network ${e.code ?? e.message ?? String(err)}`;
}

async function loadRun(s: Setup, tokens: string[], oneUser: boolean, seconds: number, log: (m: string) => void): Promise<LoadResult> {
  const clients = tokens.map((token) => new StratusClient({ server: s.balancer.url, token, connections: 2 }));
  const r: LoadResult = { oneUser, clients: tokens.length, seconds: 0, commits: 0, creates: 0, commitMs: [], cycleMs: [], errors: new Map(), verified: 0, lost: [], verifySeconds: 0 };
  const acks: Ack[] = [];
  const countError = (err: unknown) => r.errors.set(errorKey(err), (r.errors.get(errorKey(err)) ?? 0) + 1);
  try {
    const roots = await Promise.all(clients.map((c) => c.root()));
    const deadline = performance.now() + seconds * 1000;
    const start = performance.now();
    await Promise.all(
      clients.map(async (client, i) => {
        let file: NodeInfo | undefined;
        let head = 0;
        let n = 0;
        while (performance.now() < deadline) {
          const t0 = performance.now();
          try {
            if (!file || n % COMMITS_PER_FILE === 0) {
              file = await client.create({ parent_id: roots[i]!.id, name: `l${oneUser ? 'o' : 'u'}-${i}-${n}.bin`, kind: 'file' });
              head = 0;
              r.creates++;
            }
            n++;
            const bytes = crypto.randomBytes(BLOCK_BYTES);
            const hash = blake3Hex(bytes);
            const { missing } = await client.checkBlocks([hash]);
            if (missing.length > 0) await client.putBlock(hash, bytes);
            const c0 = performance.now();
            const m = await client.commit(file.id, { base_version: head, blocks: [{ hash, size: bytes.length }], size: bytes.length });
            const done = performance.now();
            r.commitMs.push(done - c0);
            r.cycleMs.push(done - t0);
            head = m.version;
            acks.push({ client: i, nodeId: file.id, version: m.version, hash });
            r.commits++;
          } catch (err) {
            countError(err);
            // A conflict: carry on from the head the server has.
            if (file && err instanceof ApiError && err.status === 409) head = (await client.node(file.id).catch(() => file!)).head_version;
            else await sleep(50);
          }
        }
      }),
    );
    r.seconds = (performance.now() - start) / 1000;

    // Nothing lost: every acknowledged commit is in its owner's listing, versions and (the last of each file) head manifest.
    log(`scale: verifying ${acks.length} acknowledged commits through the API`);
    const v0 = performance.now();
    const byNode = new Map<string, Ack[]>();
    for (const a of acks) byNode.set(a.nodeId, [...(byNode.get(a.nodeId) ?? []), a]);
    const listings = new Map<string, Map<string, NodeInfo>>();
    for (const [i, client] of clients.entries()) {
      const root = roots[i]!.id;
      if (listings.has(root)) continue;
      listings.set(root, new Map((await client.allChildren(root, 5000)).map((n) => [n.id, n])));
    }
    const nodes = [...byNode.entries()];
    await parallel(nodes.length, 16, async (k) => {
      const [nodeId, list] = nodes[k]!;
      const client = clients[list[0]!.client]!;
      const listed = listings.get(roots[list[0]!.client]!.id)!.get(nodeId);
      const last = list.reduce((a, b) => (b.version > a.version ? b : a));
      if (!listed) return void r.lost.push(`${nodeId}: not in the listing`);
      if (listed.head_version !== last.version) r.lost.push(`${nodeId}: listing says head ${listed.head_version}, last acknowledged ${last.version}`);
      const versions = new Set<number>();
      let before: number | undefined;
      for (;;) {
        const page = await client.versions(nodeId, { before, limit: 1000 });
        for (const v of page.versions) versions.add(v.version);
        if (page.next === null) break;
        before = page.next;
      }
      for (const a of list) {
        if (versions.has(a.version)) r.verified++;
        else r.lost.push(`${nodeId} v${a.version}: not in the versions`);
      }
      const head = await client.manifest(nodeId, 'head');
      if (head.blocks[0]?.hash !== last.hash) r.lost.push(`${nodeId}: head manifest names ${head.blocks[0]?.hash}, last acknowledged ${last.hash}`);
    });
    r.verifySeconds = (performance.now() - v0) / 1000;
    return r;
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

function renderLoad(loads: LoadResult[], o: ScaleOptions, setup: string): string {
  const rows = loads.map((r) => [
    r.oneUser ? `${r.clients} devices of 1 user` : `${r.clients} users, a client each`,
    String(r.commits),
    num(r.commits / r.seconds),
    num(pct(r.commitMs, 50)),
    num(pct(r.commitMs, 99)),
    num(pct(r.cycleMs, 50)),
    num(pct(r.cycleMs, 99)),
    r.errors.size ? [...r.errors].map(([k, v]) => `${k}: ${v}`).join(', ') : 'none',
    r.lost.length ? `**${r.lost.length} lost**` : `none (${r.verified} checked)`,
  ]);
  const lostLines = loads.flatMap((r) => r.lost.slice(0, 5).map((l) => `- lost (${r.oneUser ? 'one user' : 'users'}): ${l}`));
  return [
    `## Scale-out load: ${o.clients} clients committing small files for ${o.seconds} s through the balancer`,
    markdownTable(['clients', 'commits', 'commits/s', 'commit p50 ms', 'commit p99 ms', 'cycle p50 ms', 'cycle p99 ms', 'errors by status', 'lost'], rows),
    '',
    `- \`STRATUS_BENCH_ONLY=scale npm run bench\` (quick: \`STRATUS_BENCH_QUICK=1\`). ${setup}.`,
    `- Each client (a StratusClient, 2 connections) loops: every ${COMMITS_PER_FILE}th commit on a new file (POST /v1/nodes), the others edits of it; each commit is check + PUT of one new ${BLOCK_BYTES / 1024} KiB block + POST …/versions on the head it knows. Commit latency: the POST …/versions alone; cycle: create (when new) + check + put + commit.`,
    `- Lost: after the run every acknowledged commit is looked up through the API — the file in its owner's listing with the last acknowledged version as head, every acknowledged version in GET …/versions, the head manifest naming the last acknowledged block (${loads.map((r) => `${num(r.verifySeconds)} s`).join(', ')}).`,
    `- HAProxy marked a backend down (failed /healthz check) ${loads.map((r) => `${r.backendDowns ?? 0} times`).join(', then ')} during these runs.`,
    ...lostLines,
  ].join('\n');
}

/* ------------------------------------------------------------------------ */
/* Fan-out                                                                  */
/* ------------------------------------------------------------------------ */

interface Watch {
  nodeId: string;
  version: number;
  since: number;
  hintAt?: number;
  resolve(v: { hintMs: number; pulledMs: number }): void;
}

/** A device as far as hints go: one WebSocket on /v1/events, pulls /v1/changes with its cursor on every hint. */
class Device {
  messages = 0;
  pulls = 0;
  /** "429 too_many_requests": count, "socket …": count */
  readonly errors = new Map<string, number>();
  /** Per node: the newest head version a pull has shown, and when. */
  private readonly seen = new Map<string, { version: number; at: number }>();
  private ws?: WebSocket;
  private cursor?: string;
  private pulling = false;
  private again = false;
  private readonly watches = new Set<Watch>();
  readonly client: StratusClient;

  constructor(
    private readonly server: string,
    private readonly token: string,
    dispatcher: Agent,
  ) {
    this.client = new StratusClient({ server, token, dispatcher });
  }

  /** Connects, waits for the ready message (`{"hint": 0}`), takes the current cursor. */
  async connect(): Promise<void> {
    const ws = new WebSocket(eventsUrl(this.server), { headers: { authorization: `Bearer ${this.token}` }, perMessageDeflate: false });
    this.ws = ws;
    await new Promise<void>((resolve, reject) => {
      ws.once('message', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`events: HTTP ${res.statusCode}`)));
    });
    ws.on('error', (err) => this.error(`socket ${(err as { code?: string }).code ?? err.message}`));
    ws.on('close', (code) => (this.closed ? undefined : this.error(`socket closed ${code}`)));
    this.cursor = (await this.client.changesHead()).cursor;
    ws.on('message', () => {
      this.messages++;
      const t = performance.now();
      for (const w of this.watches) w.hintAt ??= t;
      void this.pull();
    });
  }

  private closed = false;

  private error(key: string): void {
    this.errors.set(key, (this.errors.get(key) ?? 0) + 1);
  }

  /** Resolves once a pull shows `nodeId` at `version` or later (times from `since`; at once if one did already). */
  watch(nodeId: string, version: number, since: number): Promise<{ hintMs: number; pulledMs: number } | undefined> {
    const seen = this.seen.get(nodeId);
    if (seen && seen.version >= version) return Promise.resolve({ hintMs: seen.at - since, pulledMs: seen.at - since });
    return new Promise((resolve) => {
      const w: Watch = { nodeId, version, since, resolve: (v) => (clearTimeout(timer), this.watches.delete(w), resolve(v)) };
      const timer = setTimeout(() => (this.watches.delete(w), resolve(undefined)), ARRIVAL_TIMEOUT_MS);
      this.watches.add(w);
    });
  }

  private async pull(): Promise<void> {
    if (this.pulling) {
      this.again = true;
      return;
    }
    this.pulling = true;
    try {
      do {
        this.again = false;
        for (;;) {
          this.pulls++;
          const page = await this.client.changes(this.cursor, 1000);
          const t = performance.now();
          this.cursor = page.cursor;
          for (const c of page.changes) {
            if ((this.seen.get(c.id)?.version ?? -1) < c.head_version) this.seen.set(c.id, { version: c.head_version, at: t });
            for (const w of this.watches) {
              if (c.id === w.nodeId && c.head_version >= w.version) w.resolve({ hintMs: (w.hintAt ?? t) - w.since, pulledMs: t - w.since });
            }
          }
          if (!page.has_more) break;
        }
      } while (this.again);
    } catch (err) {
      // As a drive does: a failed pull is tried again (a missed pull would otherwise wait for the next hint).
      this.error(errorKey(err));
      if (!this.closed) setTimeout(() => void this.pull(), 250);
    } finally {
      this.pulling = false;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const ws = this.ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      ws.once('close', () => resolve());
      ws.close();
      setTimeout(() => (ws.terminate(), resolve()), 2000).unref();
    });
  }
}

interface FanResult {
  what: string;
  devices: number;
  /** TCP connections to each backend while the devices were connected (ss). */
  spread: number[];
  connectSeconds: number;
  single: { commits: number; hintMs: number[]; pulledMs: number[]; missed: number; strayMessages: number };
  burst: { commits: number; seconds: number; messages: number[]; pulls: number[]; lastPulledMs: number[]; missed: number; strayMessages: number; errors: Map<string, number> };
  deviceErrors: Map<string, number>;
  /** Failed setup requests of the writer (retried), by status. */
  setupErrors: Map<string, number>;
  backendDowns: number;
}

/** Established TCP connections to 127.0.0.1:port (from HAProxy, the only client of the backends but this process's none). */
async function connectionsTo(port: number): Promise<number> {
  const { stdout } = await run('ss', ['-Htn', 'state', 'established', `( dport = :${port} )`]);
  return stdout.split('\n').filter((l) => l.trim()).length;
}

async function connectAll(s: Setup, tokens: string[], dispatcher: Agent, log: (m: string) => void): Promise<{ devices: Device[]; seconds: number; spread: number[] }> {
  const devices = tokens.map((t) => new Device(s.balancer.url, t, dispatcher));
  const t0 = performance.now();
  await parallel(devices.length, 50, (i) => devices[i]!.connect());
  const seconds = (performance.now() - t0) / 1000;
  log(`scale: ${devices.length} WebSockets connected in ${seconds.toFixed(1)} s`);
  const spread = await Promise.all(s.backendPorts.map(connectionsTo));
  return { devices, seconds, spread };
}

/** One small file committed by `writer`: check + put + commit on `base`. */
async function commitSmall(writer: StratusClient, nodeId: string, base: number): Promise<number> {
  const bytes = crypto.randomBytes(BLOCK_BYTES);
  const hash = blake3Hex(bytes);
  const { missing } = await writer.checkBlocks([hash]);
  if (missing.length > 0) await writer.putBlock(hash, bytes);
  return (await writer.commit(nodeId, { base_version: base, blocks: [{ hash, size: bytes.length }], size: bytes.length })).version;
}

/**
 * `observers[k]`: the devices that can see what `writers[k]` commits into `parents[k]`. Times one
 * commit per writer (one after the other, quiet in between), then a burst by the first writer.
 */
async function fanRun(
  what: string,
  s: Setup,
  o: ScaleOptions,
  writers: StratusClient[],
  parents: string[],
  observers: Device[][],
  everyone: Device[],
  conn: { seconds: number; spread: number[] },
  burst: number,
): Promise<FanResult> {
  const r: FanResult = {
    what,
    devices: everyone.length,
    spread: conn.spread,
    connectSeconds: conn.seconds,
    single: { commits: 0, hintMs: [], pulledMs: [], missed: 0, strayMessages: 0 },
    burst: { commits: 0, seconds: 0, messages: [], pulls: [], lastPulledMs: [], missed: 0, strayMessages: 0, errors: new Map() },
    deviceErrors: new Map(),
    setupErrors: new Map(),
    backendDowns: 0,
  };
  const down = downs(s.balancer);
  const settle = async () => {
    await sleep(1500); // longer than the coalescer's longest window: hints of what came before are out
  };
  // Single commits: the files are created (and their creation pulled) first, then each commit is timed, one after the other.
  const singles = await Promise.all(writers.map((w, k) => retrying(r.setupErrors, () => w.create({ parent_id: parents[k]!, name: `single-${k}.bin`, kind: 'file' }))));
  await settle();
  for (let k = 0; k < writers.length; k++) {
    const file = singles[k]!;
    const watched = new Set(observers[k]);
    const before = new Map(everyone.map((d) => [d, d.messages]));
    const since = performance.now();
    const arrivals = observers[k]!.map((d) => d.watch(file.id, 1, since));
    await retrying(r.setupErrors, () => commitSmall(writers[k]!, file.id, 0)).catch((err: unknown) => {
      // Retried after a lost reply: the first attempt may have committed (then the devices see it anyway).
      if (!(err instanceof ApiError && err.status === 409)) throw err;
    });
    for (const a of await Promise.all(arrivals)) {
      if (!a) r.single.missed++;
      else {
        r.single.hintMs.push(a.hintMs);
        r.single.pulledMs.push(a.pulledMs);
      }
    }
    r.single.commits++;
    await sleep(100);
    for (const d of everyone) if (!watched.has(d)) r.single.strayMessages += d.messages - before.get(d)!;
  }

  // Burst: the first writer commits `burst` versions over BURST_FILES files, one in flight on each;
  // the blocks are uploaded first (no hints), so the burst is commits only, as dense as they go.
  const writer = writers[0]!;
  const files = await Promise.all(Array.from({ length: BURST_FILES }, (_, i) => retrying(r.setupErrors, () => writer.create({ parent_id: parents[0]!, name: `burst-${i}.bin`, kind: 'file' }))));
  const blocks = Array.from({ length: burst }, () => crypto.randomBytes(BLOCK_BYTES));
  const hashes = blocks.map((b) => blake3Hex(b));
  await parallel(blocks.length, 8, (i) => retrying(r.setupErrors, () => writer.putBlock(hashes[i]!, blocks[i]!)));
  await settle();
  const watched = new Set(observers[0]);
  const before = new Map(everyone.map((d) => [d, { messages: d.messages, pulls: d.pulls }]));
  const heads = files.map(() => 0);
  const t0 = performance.now();
  // Each of the BURST_FILES in flight commits to a file of its own (no conflicts among them).
  await Promise.all(
    files.map(async (file, f) => {
      for (let i = f; i < burst; i += files.length) {
        try {
          heads[f] = (await writer.commit(file.id, { base_version: heads[f]!, blocks: [{ hash: hashes[i]!, size: BLOCK_BYTES }], size: BLOCK_BYTES })).version;
          r.burst.commits++;
        } catch (err) {
          r.burst.errors.set(errorKey(err), (r.burst.errors.get(errorKey(err)) ?? 0) + 1);
        }
      }
    }),
  );
  const t1 = performance.now();
  r.burst.seconds = (t1 - t0) / 1000;
  // Until every observer has pulled the last version of every file, then the trailing hints.
  const arrivals = observers[0]!.map(async (d) => {
    const got = await Promise.all(files.map((f, i) => d.watch(f.id, heads[i]!, t1)));
    return got.every(Boolean) ? Math.max(0, ...got.map((g) => g!.pulledMs)) : undefined;
  });
  for (const a of await Promise.all(arrivals)) {
    if (a === undefined) r.burst.missed++;
    else r.burst.lastPulledMs.push(a);
  }
  await settle();
  for (const d of everyone) {
    const b = before.get(d)!;
    if (watched.has(d)) {
      r.burst.messages.push(d.messages - b.messages);
      r.burst.pulls.push(d.pulls - b.pulls);
    } else r.burst.strayMessages += d.messages - b.messages;
  }
  r.backendDowns = downs(s.balancer) - down;
  for (const d of everyone) for (const [k, v] of d.errors) r.deviceErrors.set(k, (r.deviceErrors.get(k) ?? 0) + v);
  return r;
}

async function fanDevices(s: Setup, o: ScaleOptions, tag: string): Promise<FanResult> {
  const users = Math.ceil(o.devices / o.devicesPerUser);
  const names = Array.from({ length: users }, (_, u) => `fan${tag}-${u}`);
  const writerTokens: string[] = [];
  const tokens: string[][] = [];
  for (const name of names) {
    writerTokens.push((await createUser(s.db, name, 'writer')).token);
    const mine: string[] = [];
    for (let d = 0; d < o.devicesPerUser && tokens.flat().length + mine.length < o.devices; d++) mine.push((await addDevice(s.db, name, `d${d}`)).token);
    tokens.push(mine);
  }
  const dispatcher = new Agent({ connections: 128, keepAliveTimeout: 30_000 });
  const writers = writerTokens.slice(0, Math.min(users, o.singleCommits)).map((token) => new StratusClient({ server: s.balancer.url, token, connections: 8 }));
  const conn = await connectAll(s, tokens.flat(), dispatcher, o.log);
  try {
    const byUser: Device[][] = [];
    let k = 0;
    for (const mine of tokens) byUser.push(mine.map(() => conn.devices[k++]!));
    const parents = await Promise.all(writers.map(async (w) => (await w.root()).id));
    return await fanRun(`${conn.devices.length} devices of ${users} users`, s, o, writers, parents, byUser.slice(0, writers.length), conn.devices, conn, o.burst);
  } finally {
    await Promise.all(conn.devices.map((d) => d.close()));
    await Promise.all(writers.map((w) => w.close()));
    await dispatcher.close();
  }
}

async function fanShare(s: Setup, o: ScaleOptions, tag: string): Promise<FanResult> {
  const owner = await createUser(s.db, `share${tag}-owner`, 'writer');
  const writer = new StratusClient({ server: s.balancer.url, token: owner.token, connections: 8 });
  const memberNames = Array.from({ length: o.shareMembers }, (_, i) => `share${tag}-m${i}`);
  const tokens: string[] = [];
  for (const name of memberNames) tokens.push((await createUser(s.db, name, 'd0')).token);
  const folder = await writer.create({ parent_id: (await writer.root()).id, name: 'shared', kind: 'dir' });
  await parallel(memberNames.length, 8, (i) => writer.share(folder.id, { user: memberNames[i]!, role: 'editor' }));
  const dispatcher = new Agent({ connections: 128, keepAliveTimeout: 30_000 });
  const conn = await connectAll(s, tokens, dispatcher, o.log);
  try {
    const commits = Math.min(o.singleCommits, 10);
    const writers = Array.from({ length: commits }, () => writer);
    return await fanRun(`${conn.devices.length} members of one shared folder (a device each)`, s, o, writers, writers.map(() => folder.id), writers.map(() => conn.devices), conn.devices, conn, o.shareBurst);
  } finally {
    await Promise.all(conn.devices.map((d) => d.close()));
    await writer.close();
    await dispatcher.close();
  }
}

function renderFan(fan: FanResult[], o: ScaleOptions, setup: string): string {
  const lat = fan.flatMap((r) => [
    [r.what, 'hint received', String(r.single.commits), String(r.single.hintMs.length), num(pct(r.single.hintMs, 50)), num(pct(r.single.hintMs, 99)), num(Math.max(...r.single.hintMs)), String(r.single.missed)],
    [r.what, 'change pulled (GET /v1/changes shows it)', String(r.single.commits), String(r.single.pulledMs.length), num(pct(r.single.pulledMs, 50)), num(pct(r.single.pulledMs, 99)), num(Math.max(...r.single.pulledMs)), String(r.single.missed)],
  ]);
  const burst = fan.map((r) => [
    r.what,
    `${r.burst.commits} in ${num(r.burst.seconds)} s (${num(r.burst.commits / r.burst.seconds)}/s)`,
    String(r.burst.messages.length),
    spread3(r.burst.messages),
    spread3(r.burst.pulls),
    `${num(pct(r.burst.lastPulledMs, 50))} / ${num(Math.max(...r.burst.lastPulledMs))}`,
    String(r.burst.missed),
  ]);
  const notes = fan.map(
    (r) =>
      `- ${r.what}: ${r.devices} WebSockets connected in ${num(r.connectSeconds)} s; TCP connections per backend while connected (ss): ${r.spread.join(' / ')}; ` +
      `messages to devices that cannot see the change: ${r.single.strayMessages} (single commits), ${r.burst.strayMessages} (burst); device errors (socket or pull): ${r.deviceErrors.size ? [...r.deviceErrors].map(([k, v]) => `${k}: ${v}`).join(', ') : 'none'}` +
      `; HAProxy marked a backend down ${r.backendDowns} times` +
      (r.setupErrors.size ? `; writer request failures (retried): ${[...r.setupErrors].map(([k, v]) => `${k}: ${v}`).join(', ')}` : '') +
      (r.burst.errors.size ? `; burst commit errors: ${[...r.burst.errors].map(([k, v]) => `${k}: ${v}`).join(', ')}` : ''),
  );
  return [
    `## Scale-out fan-out: one commit → every device that can see it has a hint and has pulled the change (ms)`,
    markdownTable(['devices', 'until', 'commits', 'samples', 'p50', 'p99', 'max', 'missed (30 s)'], lat),
    '',
    `## Scale-out fan-out: a burst of commits by one user (${BURST_FILES} in flight, blocks uploaded before) → messages per device (coalesced)`,
    markdownTable(['devices', 'burst', 'devices that see it', 'messages per device min / median / max', 'pulls per device min / median / max', 'last commit pulled by all, p50 / max ms after the burst', 'missed'], burst),
    '',
    `- ${setup}.`,
    `- Each device: one WebSocket on GET /v1/events through the balancer (so spread over the backends by round robin), and on every hint a pull of GET /v1/changes with its cursor (one at a time; one more if hinted meanwhile; a failed pull again 250 ms later), all devices sharing 128 keep-alive connections of this driver (one Node process).`,
    `- Single commits: a file is created and its creation pulled everywhere first (1.5 s of quiet); then the clock starts, the writer (another device of the user, or the folder's owner) does check + put 4 KiB + commit, and each device that can see it counts once a hint arrived and once a pull shows the file at that version.`,
    ...notes,
  ].join('\n');
}

function spread3(xs: number[]): string {
  return xs.length ? `${Math.min(...xs)} / ${num(pct(xs, 50))} / ${Math.max(...xs)}` : '—';
}

