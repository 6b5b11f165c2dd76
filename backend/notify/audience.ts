import type { Knex } from 'knex';
import { namespaceAudience } from '../services/access.js';
import type { ChangeHint } from './bus.js';

/** A `changes` row a transaction wrote. */
export interface ChangedRow {
  ns: number;
  seq: number;
  nodeId: string;
}

/**
 * Who can see these changes: the users whose connections get a hint once the transaction commits.
 * Runs inside the transaction, so it sees the state the changes were made in. Who may see a
 * namespace is access.ts's answer (invariant 9): no one is hinted about what they cannot see.
 */
export async function changeAudience(trx: Knex.Transaction, rows: readonly ChangedRow[]): Promise<ChangeHint[]> {
  const users = await namespaceAudience(trx, [...new Set(rows.map((r) => r.ns))]);
  return users.length > 0 ? [{ userIds: users }] : [];
}
