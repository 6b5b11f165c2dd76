import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { startServer, type RunningServer } from '../../backend/server.js';
import { createUser } from '../../backend/services/accounts.js';
import { withSettings, type ServerSettings } from '../../backend/settings.js';
import { StratusClient } from '../../protocol/client.js';
import type { BlockRef } from '../../protocol/types.js';
import { startThrowawayPostgres } from '../../scripts/test-postgres.js';

/**
 * Test backends: a real server on a loopback port over a real database. Every backend test runs
 * once per engine: SQLite (a fresh file) and PostgreSQL (a fresh database in the cluster that
 * `npm test` starts, or in one this process starts when run alone).
 */

export type EngineName = 'sqlite' | 'postgres';

export function testEngines(): EngineName[] {
  return process.env.STRATUS_TEST_PG === 'off' ? ['sqlite'] : ['sqlite', 'postgres'];
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

export interface TestUser {
  id: number;
  name: string;
  token: string;
  client: StratusClient;
}

export interface TestBackend extends RunningServer {
  engine: EngineName;
  dataDir: string;
  addUser(name: string): Promise<TestUser>;
  /** Everything the database and the block store hold, for "changes nothing" assertions. */
  snapshot(): Promise<string>;
  /** Raw HTTP against the server, for malformed requests the client would never send. */
  fetch(pathname: string, init?: RequestInit & { token?: string }): Promise<Response>;
}

export async function startTestBackend(engine: EngineName, overrides: Parameters<typeof withSettings>[0] = {}): Promise<TestBackend> {
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-test-'));
  let dbUrl: string | undefined;
  let dropDb: (() => Promise<void>) | undefined;
  if (engine === 'postgres') {
    const admin = await postgresAdminUrl();
    const name = `stratus_test_${crypto.randomBytes(6).toString('hex')}`;
    const adminClient = new pg.Client({ connectionString: admin });
    await adminClient.connect();
    await adminClient.query(`CREATE DATABASE ${name}`);
    await adminClient.end();
    const url = new URL(admin);
    url.pathname = `/${name}`;
    dbUrl = url.toString();
    dropDb = async () => {
      const c = new pg.Client({ connectionString: admin });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    };
  }
  const settings: ServerSettings = withSettings(overrides);
  const server = await startServer({ dataDir, listen: '127.0.0.1:0', dbUrl, settings, log: pino({ level: process.env.STRATUS_LOG_LEVEL ?? 'silent' }) });
  const clients: StratusClient[] = [];
  return {
    ...server,
    engine,
    dataDir,
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
      out.storeTmp = await fs.readdir(path.join(dataDir, 'blocks', 'tmp'));
      return JSON.stringify(out);
    },
    fetch(pathname, init = {}) {
      const { token, headers, ...rest } = init;
      return fetch(`${server.url}${pathname}`, {
        ...rest,
        headers: { ...(token !== undefined && { authorization: `Bearer ${token}` }), ...(headers as Record<string, string>) },
      });
    },
    async close() {
      await Promise.all(clients.map((c) => c.close()));
      await server.close();
      await dropDb?.();
      await fs.rm(dataDir, { recursive: true, force: true });
    },
  };
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
