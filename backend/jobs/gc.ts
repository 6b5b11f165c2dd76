import type { Knex } from 'knex';
import type { BlockStore } from '../blockstore/blockstore.js';
import { dbClient, writeTransaction } from '../db/connect.js';
import { num } from '../db/rows.js';

export interface GcReport {
  /** Blocks looked at (no version names them, last claimed before the grace period). */
  examined: number;
  deleted: number;
  freedBytes: number;
  /** Blocks whose bytes could not be removed from the store (kept marked: the next run tries again). */
  failed: number;
}

/** Blocks marked and deleted per round. */
const BATCH = 500;
/** Block removals in flight at once. */
const DELETES_AT_ONCE = 16;

/**
 * Deletes the blocks no retained version names and nobody claimed within `graceMs` (DESIGN §3,
 * invariant 7). Per batch: the rows are locked, looked at again with a fresh snapshot (a commit
 * that named a block and held its row commits first and is seen), and marked `deleting` — from then
 * on `check` and commits treat them as missing and uploads wait (services/block-claims.ts); then
 * their bytes are removed from the store, then their rows. A run that dies midway leaves marked
 * rows, which the next run finishes. The caller holds the job's lease (one runner at a time).
 */
export async function collectGarbage(db: Knex, store: BlockStore, graceMs: number, onProgress?: (report: GcReport) => void): Promise<GcReport> {
  const report: GcReport = { examined: 0, deleted: 0, freedBytes: 0, failed: 0 };
  // Marks left by a run that died (or bytes a store could not remove): finished first.
  await removeMarked(db, store, report);
  let after = '';
  for (;;) {
    const cutoff = Date.now() - graceMs;
    const candidates: Array<{ hash: unknown }> = await db('blocks as b')
      .where('b.hash', '>', after)
      .andWhere('b.last_claimed_at', '<', cutoff)
      .whereNot('b.state', 'deleting')
      .whereNotExists((q) => q.select(db.raw('1')).from('version_blocks as vb').whereRaw('vb.hash = b.hash'))
      .orderBy('b.hash')
      .limit(BATCH)
      .select('b.hash');
    if (candidates.length === 0) break;
    const hashes = candidates.map((r) => String(r.hash));
    after = hashes.at(-1)!;
    report.examined += hashes.length;
    await mark(db, hashes, cutoff);
    await removeMarked(db, store, report, hashes);
    onProgress?.(report);
  }
  return report;
}

/** Marks those of `hashes` that are still garbage, under their row locks, with a snapshot taken after the locks. */
async function mark(db: Knex, hashes: string[], cutoff: number): Promise<void> {
  await writeTransaction(db, async (trx) => {
    if (dbClient(db) === 'pg') await trx.raw(`SELECT 1 FROM blocks WHERE hash IN (${hashes.map(() => '?').join(',')}) ORDER BY hash FOR UPDATE`, hashes);
    await trx('blocks as b')
      .whereIn('b.hash', hashes)
      .andWhere('b.last_claimed_at', '<', cutoff)
      .whereNot('b.state', 'deleting')
      .whereNotExists((q) => q.select(trx.raw('1')).from('version_blocks as vb').whereRaw('vb.hash = b.hash'))
      .update({ state: 'deleting', gc_at: Date.now() });
  });
}

/** Removes the bytes, then the rows, of marked blocks (those among `only`, or all). */
async function removeMarked(db: Knex, store: BlockStore, report: GcReport, only?: string[]): Promise<void> {
  const q = db('blocks').where('state', 'deleting').select('hash', 'size');
  if (only) q.whereIn('hash', only);
  const marked: Array<{ hash: unknown; size: unknown }> = await q;
  const removed: string[] = [];
  // Several at once: one at a time, removing files was 85–95 % of a run (the bench's history group).
  let next = 0;
  const worker = async () => {
    while (next < marked.length) {
      const row = marked[next++]!;
      const hash = String(row.hash);
      try {
        await store.delete(hash);
        removed.push(hash);
        report.deleted++;
        report.freedBytes += num(row.size);
      } catch {
        report.failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(DELETES_AT_ONCE, marked.length) }, worker));
  for (let i = 0; i < removed.length; i += 500) {
    const batch = removed.slice(i, i + 500);
    await writeTransaction(db, async (trx) => {
      await trx('block_owners').whereIn('hash', batch).delete();
      await trx('blocks').whereIn('hash', batch).where('state', 'deleting').delete();
    });
  }
}
