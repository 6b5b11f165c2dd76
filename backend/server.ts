import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import path from 'node:path';
import type { Knex } from 'knex';
import { pino, type Logger } from 'pino';
import { createApp } from './app.js';
import { watchDbPool } from './metrics/db-pool.js';
import { ServerMetrics } from './metrics/server-metrics.js';
import type { BlockStore } from './blockstore/blockstore.js';
import { openBlockStore } from './blockstore/open.js';
import { dbClient, openDatabase } from './db/connect.js';
import type { NotifyBus } from './notify/bus.js';
import { scheduleHistoryJobs } from './jobs/history-jobs.js';
import { EventsGateway } from './notify/gateway.js';
import { MemoryBus } from './notify/memory-bus.js';
import { PgBus } from './notify/pg-bus.js';
import { forgetDevice } from './services/accounts.js';
import { onCommitted } from './services/journal.js';
import { RateLimits } from './services/rate-limits.js';
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
  /** Serve GET /metrics on this listener (default true); the counts are kept either way (RunningServer.metrics). */
  metricsRoute?: boolean;
}

export interface RunningServer {
  url: string;
  db: Knex;
  store: BlockStore;
  settings: ServerSettings;
  /** The Prometheus metrics (what GET /metrics serves), e.g. for a listener of their own. */
  metrics: ServerMetrics;
  /** The WebSocket connections of GET /v1/events. */
  events: {
    connections(): number;
    /** Drops every connection server-side (what a network cut or a server restart looks like to clients). */
    disconnectAll(): void;
  };
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
  const db = await openDatabase(opts.dbUrl, dataDir, log);
  const metrics = new ServerMetrics();
  const stopWatchingPool = watchDbPool(db, metrics);
  let store: BlockStore | undefined;
  let bus: NotifyBus | undefined;
  let stopPublishing: (() => void) | undefined;
  let gateway: EventsGateway | undefined;
  try {
    store = await openBlockStore(opts.blocksUrl, dataDir);
    // Change hints: in-process with one server; over LISTEN/NOTIFY when several share PostgreSQL.
    bus = dbClient(db) === 'pg' ? await PgBus.start({ url: opts.dbUrl!, db, log }) : new MemoryBus(log);
    const openBus = bus;
    stopPublishing = onCommitted(db, ({ hints, revocations }) => {
      const committedAt = Date.now();
      for (const hint of hints) openBus.publish({ ...hint, committedAt });
      for (const revocation of revocations) openBus.revoke(revocation);
    });
    // A device revoked through another backend stops authenticating here at once, too.
    bus.subscribe((event) => {
      if (event.kind === 'revoke') forgetDevice(event.deviceId);
    });
    const backend = { db, store, settings, rates: new RateLimits(settings.rate) };
    const app = createApp(backend, log, { counts: metrics, route: opts.metricsRoute !== false });
    const limits = settings.http;
    const server = http.createServer(
      {
        headersTimeout: limits.headers_timeout_ms,
        requestTimeout: limits.request_timeout_ms,
        keepAliveTimeout: limits.keep_alive_timeout_ms,
        // How often Node looks for requests past those timeouts: a fraction of the shortest.
        connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(Math.min(limits.headers_timeout_ms, limits.request_timeout_ms) / 4))),
      },
      app.callback(),
    );
    server.maxConnections = limits.max_connections;
    // A connection on which nothing moves (a body that stopped coming, a client that stopped
    // reading) is closed; a WebSocket is exempt once upgraded (its keepalive pings watch it).
    server.setTimeout(limits.idle_timeout_ms, (socket) => socket.destroy());
    const openGateway = (gateway = new EventsGateway(backend, bus, log, (seconds) => metrics.hintLag.observe(seconds)));
    metrics.sources.connections = () => openGateway.connections();
    server.on('upgrade', (req, socket, head) => {
      (socket as Socket).setTimeout(0);
      openGateway.handleUpgrade(req, socket, head);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    // Retention and block GC on a schedule (one backend at a time, by lease).
    const jobs = scheduleHistoryJobs(db, store, settings.history, log);
    const address = server.address() as AddressInfo;
    const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    const openStore = store;
    return {
      url: `http://${urlHost}:${address.port}`,
      db,
      store: openStore,
      settings,
      metrics,
      events: {
        connections: () => openGateway.connections(),
        disconnectAll: () => openGateway.disconnectAll(),
      },
      async close() {
        const httpClosed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await openGateway.close();
        await httpClosed;
        await jobs.stop();
        stopPublishing?.();
        await openBus.close();
        await openStore.close();
        stopWatchingPool();
        await db.destroy();
      },
    };
  } catch (err) {
    await gateway?.close();
    stopPublishing?.();
    await bus?.close();
    await store?.close();
    stopWatchingPool();
    await db.destroy();
    throw err;
  }
}
