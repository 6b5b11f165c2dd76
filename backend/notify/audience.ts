import type { Knex } from 'knex';
import type { ChangeHint } from './bus.js';

/** A `changes` row a transaction wrote. */
export interface ChangedRow {
  seq: number;
  ownerId: number;
  nodeId: string;
}

/**
 * Who can see these changes, and up to which seq: the users whose connections get a hint once the
 * transaction commits. Runs inside the transaction, so it sees the state the changes were made in.
 *
 * Today a change is visible to the node's owner only. Shares extend it here (grantees of a share
 * on the node or an ancestor), and only here (invariant 8: no one is hinted about what they
 * cannot see).
 */
export async function changeAudience(_trx: Knex.Transaction, rows: readonly ChangedRow[]): Promise<ChangeHint[]> {
  const newest = new Map<number, number>();
  for (const row of rows) newest.set(row.ownerId, Math.max(newest.get(row.ownerId) ?? 0, row.seq));
  return groupBySeq(newest);
}

/** user → newest seq, as one hint per distinct seq. */
export function groupBySeq(newest: ReadonlyMap<number, number>): ChangeHint[] {
  const bySeq = new Map<number, number[]>();
  for (const [userId, seq] of newest) {
    const users = bySeq.get(seq);
    if (users) users.push(userId);
    else bySeq.set(seq, [userId]);
  }
  return [...bySeq].map(([seq, userIds]) => ({ userIds, seq }));
}
