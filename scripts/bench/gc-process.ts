// As the CLI (`stratus serve`, `stratus gc`): a thread pool of 16, set before anything uses it.
import '../../cli/threadpool.js';
import path from 'node:path';
import type { Knex } from 'knex';
import type { BlockStore } from '../../backend/blockstore/blockstore.js';
import { openBlockStore } from '../../backend/blockstore/open.js';
import { openDatabase } from '../../backend/db/connect.js';
import { runHistoryJobs } from '../../backend/jobs/history-jobs.js';
import { startServer } from '../../backend/server.js';
import { defaultSettings } from '../../backend/settings.js';

/**
 * The history bench's GC, run the two ways production runs it, each a process of its own:
 *
 * - `node gc-process.js gc DATA [DB_URL]`: what `stratus gc` does next to running servers: opens
 *   the data as cli/gc.ts does, runs `runHistoryJobs` once (retention, then block GC), exits.
 * - `node gc-process.js serve DATA [DB_URL]`: `stratus serve` (startServer, default settings, on
 *   127.0.0.1, a free port; says `serving on URL`) whose scheduled job is started on SIGUSR2
 *   instead of by its hourly timer: `runHistoryJobs` on the server's own database handle and block
 *   store, in the server's process, as scheduleHistoryJobs runs it. SIGTERM closes it.
 *
 * Either way the block store is wrapped only to time its deletes, and stderr gets `gc started at
 * MS` when the run starts, then `gc done JSON` (GcProcessResult) or `gc failed: …`.
 */

export interface GcProcessResult {
  startedAt: number;
  endedAt: number;
  purge: { items: number; nodes: number; versions: number };
  gc: { examined: number; deleted: number; freedBytes: number; failed: number };
  /** Time spent in the store's delete() (the unlinks), summed. */
  deleteSeconds: number;
  /** After each GC batch: [Date.now(), examined so far, deleted so far]. */
  progress: Array<[number, number, number]>;
}

async function collect(db: Knex, inner: BlockStore): Promise<void> {
  let deleteSeconds = 0;
  const store: BlockStore = {
    has: (hash) => inner.has(hash),
    put: (hash, body, opts) => inner.put(hash, body, opts),
    get: (hash, range) => inner.get(hash, range),
    delete: async (hash) => {
      const start = performance.now();
      try {
        await inner.delete(hash);
      } finally {
        deleteSeconds += (performance.now() - start) / 1000;
      }
    },
    list: () => inner.list(),
    close: () => inner.close(),
  };
  const progress: GcProcessResult['progress'] = [];
  const startedAt = Date.now();
  process.stderr.write(`gc started at ${startedAt}\n`);
  const run = await runHistoryJobs(db, store, defaultSettings.history, (r) => progress.push([Date.now(), r.examined, r.deleted]));
  if (!run) throw new Error('another runner holds the history jobs lease');
  const result: GcProcessResult = { startedAt, endedAt: Date.now(), purge: run.purge, gc: run.gc, deleteSeconds, progress };
  process.stderr.write(`gc done ${JSON.stringify(result)}\n`);
}

const [mode, dataArg, dbArg] = process.argv.slice(2);
if ((mode !== 'gc' && mode !== 'serve') || !dataArg) throw new Error('usage: gc-process.js gc|serve DATA [DB_URL]');
const dataDir = path.resolve(dataArg);
const dbUrl = dbArg || undefined;
if (mode === 'gc') {
  const db = await openDatabase(dbUrl, dataDir);
  const store = await openBlockStore(undefined, dataDir);
  try {
    await collect(db, store);
  } finally {
    await store.close();
    await db.destroy();
  }
} else {
  const server = await startServer({ dataDir, dbUrl, listen: '127.0.0.1:0' });
  process.stderr.write(`serving on ${server.url}\n`);
  let running: Promise<void> | undefined;
  process.on('SIGUSR2', () => {
    running ??= collect(server.db, server.store)
      .catch((err: unknown) => void process.stderr.write(`gc failed: ${(err as Error).stack ?? String(err)}\n`))
      .finally(() => (running = undefined));
  });
  process.once('SIGTERM', () => {
    void (async () => {
      await running;
      await server.close();
      process.exit(0);
    })();
  });
}
