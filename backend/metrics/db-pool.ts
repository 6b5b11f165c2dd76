import type { Knex } from 'knex';
import type { ServerMetrics } from './server-metrics.js';

/** The parts of knex's pool (tarn) read here. */
interface TarnPool {
  max: number;
  numUsed(): number;
  numFree(): number;
  numPendingAcquires(): number;
  on(event: 'acquireRequest', fn: (id: number) => void): void;
  on(event: 'acquireSuccess' | 'acquireFail', fn: (id: number) => void): void;
  removeListener(event: string, fn: (...args: never[]) => void): void;
}

/**
 * Saturation of the metadata database: the pool's connections and the queries waiting for one
 * (gauges read at scrape time), and how long each acquire waited (from tarn's events). Returns
 * the function that stops watching.
 */
export function watchDbPool(db: Knex, metrics: ServerMetrics): () => void {
  const pool = (db.client as { pool?: TarnPool }).pool;
  if (!pool || typeof pool.numPendingAcquires !== 'function') return () => undefined;
  metrics.sources.pool = () => ({ pendingAcquires: pool.numPendingAcquires(), used: pool.numUsed(), free: pool.numFree(), max: pool.max });
  const started = new Map<number, bigint>();
  const onRequest = (id: number) => void started.set(id, process.hrtime.bigint());
  const onDone = (id: number) => {
    const at = started.get(id);
    if (at === undefined) return;
    started.delete(id);
    metrics.poolAcquireSeconds.observe(Number(process.hrtime.bigint() - at) / 1e9);
  };
  pool.on('acquireRequest', onRequest);
  pool.on('acquireSuccess', onDone);
  pool.on('acquireFail', onDone);
  return () => {
    pool.removeListener('acquireRequest', onRequest);
    pool.removeListener('acquireSuccess', onDone);
    pool.removeListener('acquireFail', onDone);
    metrics.sources.pool = undefined;
  };
}
