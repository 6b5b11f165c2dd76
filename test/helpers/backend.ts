import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Knex } from 'knex';
import pg from 'pg';
import { pino } from 'pino';
import tap from 'tap';
import { Storage } from '@google-cloud/storage';
import { WebSocket } from 'ws';
import { knexConfig } from '../../backend/db/connect.js';
import { startServer, type RunningServer } from '../../backend/server.js';
import { createUser } from '../../backend/services/accounts.js';
import { withSettings, type ServerSettings, type SettingsOverrides } from '../../backend/settings.js';
import { StratusClient } from '../../protocol/client.js';
import type { BlockRef } from '../../protocol/types.js';
import { startThrowawayPostgres } from '../../scripts/test-postgres.js';
import { GcsBlockStore } from '../../backend/blockstore/gcs.js';
import { filesUnder } from './blockstore.js';
import { startGcsEmulator, type GcsEmulator } from './gcs.js';

/**
 * Test backends: a real server on a loopback port over a real database. Every backend test runs
 * once per engine: SQLite (a fresh file) and PostgreSQL (a fresh database in the cluster that
 * `npm test` starts, or in one this process starts when run alone).
 */

export type EngineName = 'sqlite' | 'postgres';

export function testEngines(): EngineName[] {
  return process.env.STRATUS_TEST_PG === 'off' ? ['sqlite'] : ['sqlite', 'postgres'];
}

/** Where a test backend keeps its blocks: a folder, or a bucket of the GCS emulator. */
export type BlockEngine = 'disk' | 'gcs';

export interface TestSetup {
  /** For test names: `sqlite`, `postgres`, `sqlite, blocks on gcs`. */
  name: string;
  engine: EngineName;
  blocks: BlockEngine;
}

/**
 * The setups of the suites whose subject is the blocks (block routes, versions): every database
 * engine on the disk store, and SQLite on the GCS store (the store is independent of the database).
 */
export function blockTestSetups(): TestSetup[] {
  return [...testEngines().map((engine): TestSetup => ({ name: engine, engine, blocks: 'disk' })), { name: 'sqlite, blocks on gcs', engine: 'sqlite', blocks: 'gcs' }];
}

let sharedGcs: Promise<GcsEmulator> | undefined;

/** One GCS emulator for this test process (each backend gets its own prefix), stopped when the process's tests end. */
function gcsEmulator(): Promise<GcsEmulator> {
  sharedGcs ??= startGcsEmulator(tap);
  return sharedGcs;
}

let ownCluster: Promise<{ url: string; stop(): Promise<void> }> | undefined;

async function postgresAdminUrl(): Promise<string> {
  if (process.env.STRATUS_TEST_PG_URL) return process.env.STRATUS_TEST_PG_URL;
  ownCluster ??= startThrowawayPostgres().then((c) => {
    process.once('exit', () => void c.stop());
    return c;
  });
  return (await ownCluster).url;
}

/** Stops the PostgreSQL cluster this process started, if any (call from a top-level teardown). */
export async function stopOwnCluster(): Promise<void> {
  if (ownCluster) await (await ownCluster).stop();
  ownCluster = undefined;
}

/** A fresh, empty database in the test PostgreSQL cluster; `drop()` removes it (also with connections open). */
export async function createPgDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const admin = await postgresAdminUrl();
  const name = `stratus_test_${crypto.randomBytes(6).toString('hex')}`;
  const adminClient = new pg.Client({ connectionString: admin });
  await adminClient.connect();
  await adminClient.query(`CREATE DATABASE ${name}`);
  await adminClient.end();
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: admin });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

export interface TestUser {
  id: number;
  name: string;
  token: string;
  client: StratusClient;
}

export interface TestBackend extends RunningServer {
  engine: EngineName;
  blocks: BlockEngine;
  dataDir: string;
  addUser(name: string): Promise<TestUser>;
  /** Everything the database and the block store hold, for "changes nothing" assertions. */
  snapshot(): Promise<string>;
  /** Every file (disk) or object (GCS) of the block store, relative to it (`tmp/…` are uploads in progress), sorted. */
  storeFiles(): Promise<string[]>;
  /** Raw HTTP against the server, for malformed requests the client would never send. */
  fetch(pathname: string, init?: RequestInit & { token?: string }): Promise<Response>;
  /**
   * Stops this server process's part (keeping the database and the blocks) and serves the same
   * data from a new one, as a server restart does; the returned backend is the one to close.
   */
  restart(): Promise<TestBackend>;
}

/**
 * `blocks`: the block store's engine (default disk). `blocksDir`: the disk store's folder
 * (default: `blocks/` in the data folder). `before`: runs
 * with the Knex config of the server's database before the server opens (and migrates) it, e.g.
 * to build an older schema with rows in it.
 */
export async function startTestBackend(
  engine: EngineName,
  overrides: SettingsOverrides = {},
  opts: { blocks?: BlockEngine; blocksDir?: string; before?: (config: Knex.Config) => Promise<void> } = {},
): Promise<TestBackend> {
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-test-'));
  const blocksUrl = opts.blocks === 'gcs' ? (await gcsEmulator()).blocksUrl() : (opts.blocksDir ?? path.join(dataDir, 'blocks'));
  let data: TestData = { engine, dataDir, blocksUrl, settings: withSettings(overrides) };
  if (engine === 'postgres') {
    const created = await createPgDatabase();
    data = { ...data, dbUrl: created.url, dropDb: created.drop };
  }
  await opts.before?.(knexConfig(data.dbUrl, dataDir));
  return serveTestData(data);
}

/** Where a test backend keeps its data: what a restart serves again. */
interface TestData {
  engine: EngineName;
  dataDir: string;
  /** A folder, or gs://BUCKET/PREFIX. */
  blocksUrl: string;
  settings: ServerSettings;
  dbUrl?: string;
  dropDb?: () => Promise<void>;
}

async function serveTestData(data: TestData): Promise<TestBackend> {
  const { engine, dataDir, blocksUrl, settings, dbUrl, dropDb } = data;
  const server = await startServer({ dataDir, listen: '127.0.0.1:0', dbUrl, blocksUrl, settings, log: pino({ level: process.env.STRATUS_LOG_LEVEL ?? 'silent' }) });
  const clients: StratusClient[] = [];
  const storeFiles = () => filesOfStore(server.store, blocksUrl);
  return {
    ...server,
    engine,
    blocks: server.store instanceof GcsBlockStore ? 'gcs' : 'disk',
    dataDir,
    storeFiles,
    async addUser(name) {
      const created = await createUser(server.db, name);
      const client = new StratusClient({ server: server.url, token: created.token });
      clients.push(client);
      return { id: created.userId, name, token: created.token, client };
    },
    async snapshot() {
      const tables = ['users', 'devices', 'nodes', 'versions', 'version_blocks', 'blocks', 'block_owners', 'changes', 'shares', 'audit'];
      const out: Record<string, unknown> = {};
      for (const table of tables) {
        const rows: Array<Record<string, unknown>> = await server.db(table).select();
        out[table] = rows
          .map((r) => {
            const { last_seen_at: _seen, ...rest } = r;
            return JSON.stringify(Object.fromEntries(Object.entries(rest).map(([k, v]) => [k, v === null ? null : String(v)])));
          })
          .sort();
      }
      const blocks: string[] = [];
      for await (const hash of server.store.list()) blocks.push(hash);
      out.store = blocks.sort();
      out.storeTmp = (await storeFiles()).filter((f) => f.startsWith('tmp/'));
      return JSON.stringify(out);
    },
    fetch(pathname, init = {}) {
      const { token, headers, ...rest } = init;
      return fetch(`${server.url}${pathname}`, {
        ...rest,
        headers: { ...(token !== undefined && { authorization: `Bearer ${token}` }), ...(headers as Record<string, string>) },
      });
    },
    async restart() {
      await Promise.all(clients.map((c) => c.close()));
      await server.close();
      return serveTestData(data);
    },
    async close() {
      await Promise.all(clients.map((c) => c.close()));
      await server.close();
      await dropDb?.();
      await fs.rm(dataDir, { recursive: true, force: true });
    },
  };
}

async function filesOfStore(store: RunningServer['store'], blocksUrl: string): Promise<string[]> {
  if (!(store instanceof GcsBlockStore)) return filesUnder(blocksUrl);
  const prefix = store.location.prefix;
  const [files] = await new Storage().bucket(store.location.bucket).getFiles({ prefix });
  return files.map((f) => f.name.slice(prefix.length)).sort();
}

/** `promise`'s value, or a rejection naming `what` if it has not settled within `ms` (waits for an event, never sleeps). */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Random bytes and their block id. */
export function randomBlock(size: number): { bytes: Buffer; hash: string } {
  const bytes = crypto.randomBytes(size);
  return { bytes, hash: blockHash(bytes) };
}

/** Uploads random blocks of these sizes and commits them as the version after `base` of a file. */
export async function commitRandomBlocks(client: StratusClient, fileId: string, base: number, sizes: number[]): Promise<BlockRef[]> {
  const blocks: BlockRef[] = [];
  for (const size of sizes) {
    const block = randomBlock(size);
    await client.putBlock(block.hash, block.bytes);
    blocks.push({ hash: block.hash, size });
  }
  await client.commit(fileId, { base_version: base, blocks, size: sizes.reduce((a, b) => a + b, 0) });
  return blocks;
}

export { blake3Hex as blockHash } from '../../protocol/hash.js';
import { blake3Hex as blockHash } from '../../protocol/hash.js';

/**
 * A client of `GET /v1/events` that records every message, for tests that wait on them (never
 * sleep). The server sends `{"hint": N}`, N counting that connection's hints: 0 when it is ready,
 * then 1, 2, … (coalesced: some numbers are skipped).
 */
/**
 * The most messages a connection may get for a burst of commits lasting `burstMs` (default
 * settings): the coalescer's windows double from 20 ms to 1 s while the burst lasts, so a burst
 * of S seconds goes out in about 6 + S messages. Twice that plus 10 is the bound — independent of
 * how fast this machine commits, and far below one message per commit.
 */
export function coalescedBound(burstMs: number): number {
  return 10 + 2 * (6 + Math.ceil(burstMs / 1000));
}

export interface EventStream {
  ws: WebSocket;
  /** Every message received, parsed, in order. */
  messages: unknown[];
  /** The `hint` of every message, in order (NaN for a message without one). */
  hints: number[];
  /** The first received hint that is ≥ min (also one that came before the call); rejects after timeoutMs. */
  waitFor(min: number, timeoutMs?: number): Promise<number>;
  /** Resolves with the close code once the socket is closed (by either side). */
  closed: Promise<number>;
  close(): Promise<void>;
}

/** Opens `GET /v1/events` on a server with a device token; rejects with the HTTP status and body if the upgrade is refused. */
export function connectEvents(serverUrl: string, token: string, opts: { path?: string; autoPong?: boolean } = {}): Promise<EventStream> {
  const ws = new WebSocket(`${serverUrl.replace(/^http/, 'ws')}${opts.path ?? '/v1/events'}`, {
    headers: { authorization: `Bearer ${token}` },
    autoPong: opts.autoPong ?? true,
  });
  const messages: unknown[] = [];
  const hints: number[] = [];
  const waiters = new Set<() => void>();
  ws.on('message', (data) => {
    const message = JSON.parse(String(data)) as { hint?: unknown };
    messages.push(message);
    hints.push(typeof message?.hint === 'number' ? message.hint : NaN);
    for (const wake of waiters) wake();
  });
  ws.on('error', () => undefined); // a socket error ends in 'close', which tests observe
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  const stream: EventStream = {
    ws,
    messages,
    hints,
    closed,
    waitFor(min, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = hints.find((h) => h >= min);
          if (hit === undefined) return false;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(hit);
          return true;
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no hint >= ${min} within ${timeoutMs} ms (got ${JSON.stringify(messages)})`));
        }, timeoutMs);
        if (!check()) waiters.add(check);
      });
    },
    async close() {
      if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
      await closed;
    },
  };
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(stream));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      res.on('end', () => reject(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { status: res.statusCode, body: body ? (JSON.parse(body) as unknown) : undefined })));
      res.on('error', reject);
    });
    ws.once('error', reject);
  });
}
