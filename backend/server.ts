import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Knex } from 'knex';
import { pino, type Logger } from 'pino';
import { createApp } from './app.js';
import type { BlockStore } from './blockstore/blockstore.js';
import { openBlockStore } from './blockstore/open.js';
import { openDatabase } from './db/connect.js';
import { defaultSettings, type ServerSettings } from './settings.js';

export interface ServeOptions {
  /** Data folder: the SQLite file and blocks/ live here unless --db / --blocks say otherwise. */
  dataDir?: string;
  /** HOST:PORT; port 0 picks a free one. */
  listen?: string;
  dbUrl?: string;
  blocksUrl?: string;
  settings?: ServerSettings;
  log?: Logger;
}

export interface RunningServer {
  url: string;
  db: Knex;
  store: BlockStore;
  settings: ServerSettings;
  close(): Promise<void>;
}

export function parseListen(listen: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(listen);
  const port = Number(match?.[3]);
  if (!match || port > 65535) throw new Error(`--listen must be HOST:PORT, got "${listen}"`);
  return { host: match[1] ?? match[2] ?? '127.0.0.1', port };
}

/** Opens the metadata database and the block store, and serves the API until `close()`. */
export async function startServer(opts: ServeOptions = {}): Promise<RunningServer> {
  const dataDir = path.resolve(opts.dataDir ?? 'stratus-data');
  const { host, port } = parseListen(opts.listen ?? '127.0.0.1:7420');
  const log = opts.log ?? pino({ level: process.env.STRATUS_LOG_LEVEL ?? 'info' }, pino.destination(2));
  const settings = opts.settings ?? defaultSettings;
  const db = await openDatabase(opts.dbUrl, dataDir);
  let store: BlockStore | undefined;
  try {
    store = await openBlockStore(opts.blocksUrl, dataDir);
    const app = createApp({ db, store, settings }, log);
    const server = http.createServer(app.callback());
    server.keepAliveTimeout = 65_000;
    server.requestTimeout = 0; // uploads of large blocks on slow links must not be cut off
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    const address = server.address() as AddressInfo;
    const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    const openStore = store;
    return {
      url: `http://${urlHost}:${address.port}`,
      db,
      store: openStore,
      settings,
      async close() {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        await openStore.close();
        await db.destroy();
      },
    };
  } catch (err) {
    await store?.close();
    await db.destroy();
    throw err;
  }
}
