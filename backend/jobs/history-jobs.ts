import type { Knex } from 'knex';
import type { Logger } from 'pino';
import type { BlockStore } from '../blockstore/blockstore.js';
import type { HistorySettings } from '../settings.js';
import { collectGarbage, type GcReport } from './gc.js';
import { releaseLease, takeLease } from './lease.js';
import { purgeExpired, type PurgeReport } from './purge.js';

/** The lease of the purge and GC run: one backend at a time. */
const LEASE = 'history';
/** Renewed this often while a run goes on; expires (a dead holder) after three missed renewals. */
const RENEW_MS = 20_000;

export interface HistoryRun {
  purge: PurgeReport;
  gc: GcReport;
}

/**
 * One run of retention and block GC: purge what retention lets go, then delete the blocks nothing
 * references any more. Undefined when another backend holds the lease (it is running them).
 */
export async function runHistoryJobs(db: Knex, store: BlockStore, settings: HistorySettings, onProgress?: (gc: GcReport) => void): Promise<HistoryRun | undefined> {
  if (!(await takeLease(db, LEASE, 3 * RENEW_MS))) return undefined;
  const renew = setInterval(() => void takeLease(db, LEASE, 3 * RENEW_MS).catch(() => undefined), RENEW_MS);
  renew.unref();
  try {
    const purge = await purgeExpired(db, Date.now() - settings.retention_ms);
    const gc = await collectGarbage(db, store, settings.gc_grace_ms, onProgress);
    return { purge, gc };
  } finally {
    clearInterval(renew);
    await releaseLease(db, LEASE).catch(() => undefined);
  }
}

/** Runs the jobs every `jobs_interval_ms` (if not 0) until stopped; a failed run is logged and the next one comes. */
export function scheduleHistoryJobs(db: Knex, store: BlockStore, settings: HistorySettings, log: Logger): { stop(): Promise<void> } {
  let running: Promise<unknown> | undefined;
  let stopped = false;
  const timer =
    settings.jobs_interval_ms > 0
      ? setInterval(() => {
          if (running || stopped) return;
          running = runHistoryJobs(db, store, settings)
            .then((run) => run && log.info({ purge: run.purge, gc: run.gc }, 'retention and block GC ran'))
            .catch((err: unknown) => log.error({ err }, 'retention and block GC failed'))
            .finally(() => (running = undefined));
        }, settings.jobs_interval_ms)
      : undefined;
  timer?.unref();
  return {
    async stop() {
      stopped = true;
      if (timer) clearInterval(timer);
      await running;
    },
  };
}
