import type { Knex } from 'knex';
import { ApiError } from '../../protocol/errors.js';
import { dbClient, writeTransaction } from '../db/connect.js';

/**
 * The block rows as the meeting point of uploads, commits and the GC (DESIGN §3, invariant 7).
 *
 * A block row is `present` (usable), `pending` (an upload is publishing its bytes) or `deleting`
 * (the GC is removing its bytes). Every upload and every `check` that finds a block present
 * claims it (`last_claimed_at`); the GC takes only blocks no version names whose last claim is
 * older than its grace period, and marks them `deleting` under the row lock before it removes a
 * byte. So:
 * - an upload claims the row before its bytes become visible (`claimForUpload`): a row being
 *   deleted makes it wait until the GC is done, then it stores the bytes again; a claim the GC has
 *   not yet seen keeps the block (too recent);
 * - a commit locks the rows of the blocks it names (`lockForCommit`) before it checks them: the
 *   GC's mark waits for the commit (and then sees its version), or the commit waits for the mark
 *   (and then sees the block missing: 409, the client uploads it again);
 * - a `check` that answers "you need not send it" claims the block first (`claimChecked`), so
 *   the commit that follows within the grace period finds it.
 * On SQLite, transactions run one at a time (one connection), which gives the same order.
 */

/** How long an upload waits for the GC to finish removing a block before it answers 503. */
const DELETING_WAIT_MS = 30_000;

/**
 * Inside the upload, once its bytes are verified and durable, before they are published under
 * `hash`: the row is claimed (made `pending` if new). Waits while the GC is removing the block.
 */
export async function claimForUpload(db: Knex, hash: string, size: number): Promise<void> {
  const until = Date.now() + DELETING_WAIT_MS;
  for (let delay = 5; ; delay = Math.min(delay * 2, 200)) {
    const claimed = await writeTransaction(db, async (trx) => {
      const now = Date.now();
      const row = await forUpdate(trx, trx('blocks').where({ hash })).first('state');
      if (!row) {
        await trx('blocks').insert({ hash, size, created_at: now, last_claimed_at: now, state: 'pending' }).onConflict('hash').ignore();
        return true;
      }
      if (row.state === 'deleting') return false;
      await trx('blocks').where({ hash }).update({ last_claimed_at: now });
      return true;
    });
    if (claimed) return;
    if (Date.now() > until) throw new ApiError('unavailable', 'this block is being removed by the garbage collector; try again shortly', { retry_after_s: 1 });
    await new Promise((r) => setTimeout(r, delay));
  }
}

/**
 * After the upload published its bytes: the block is usable (and a block marked corrupt is
 * repaired) — if its row is still the one the upload claimed. A GC that took it meanwhile (only
 * possible with a grace period shorter than the upload) has removed or is removing the bytes: the
 * upload fails (503) and the client sends it again.
 */
export async function recordUpload(trx: Knex.Transaction, hash: string): Promise<void> {
  const now = Date.now();
  const kept = await trx('blocks').where({ hash }).whereIn('state', ['pending', 'present']).update({ corrupt_at: null, state: 'present', last_claimed_at: now });
  if (kept !== 1) throw new ApiError('unavailable', 'the block was collected while it was being stored; send it again', { retry_after_s: 1 });
}

/**
 * A `check` found these blocks usable: their claims are refreshed (one newer than a quarter of the
 * grace period, at most a minute, is left as is), so the GC leaves them for the commit that follows.
 * Returns those the GC had marked meanwhile: they are missing after all.
 */
export async function claimChecked(db: Knex, hashes: string[], graceMs: number): Promise<Set<string>> {
  const now = Date.now();
  // Refreshing a claim this recent buys nothing: the grace period is far longer.
  const fresh = Math.min(60_000, Math.floor(graceMs / 4));
  const lost = new Set<string>();
  for (let i = 0; i < hashes.length; i += 500) {
    const batch = hashes.slice(i, i + 500);
    await db('blocks').whereIn('hash', batch).andWhere('state', 'present').andWhere('last_claimed_at', '<', now - fresh).update({ last_claimed_at: now });
    // Marked by the GC before the claim: no longer there for the commit.
    const gone: Array<{ hash: unknown }> = await db('blocks').whereIn('hash', batch).andWhereNot('state', 'present').select('hash');
    for (const r of gone) lost.add(String(r.hash));
  }
  return lost;
}

/** Inside a commit, before its blocks are checked: their rows stay locked (shared) until it ends, so the GC's mark cannot pass it. */
export async function lockForCommit(trx: Knex.Transaction, hashes: string[]): Promise<void> {
  if (dbClient(trx) !== 'pg') return;
  const sorted = [...hashes].sort();
  for (let i = 0; i < sorted.length; i += 500) await trx.raw(`SELECT 1 FROM blocks WHERE hash IN (${sorted.slice(i, i + 500).map(() => '?').join(',')}) ORDER BY hash FOR SHARE`, sorted.slice(i, i + 500));
}

/** The rows stay locked until the transaction ends (PostgreSQL; SQLite runs one transaction at a time). */
function forUpdate(trx: Knex.Transaction, q: Knex.QueryBuilder): Knex.QueryBuilder {
  return dbClient(trx) === 'pg' ? q.forUpdate() : q;
}
