import type { Knex } from 'knex';
import { dbClient } from '../db/connect.js';
import type { NodeRow } from '../db/rows.js';

/** Any constant: the PostgreSQL advisory lock that orders mutations (see `mutate`). */
const MUTATION_LOCK = 7420_0001;

/**
 * Runs `fn` in a transaction that may change metadata. On PostgreSQL it first takes a
 * transaction-scoped advisory lock, so mutations commit in the order of the `changes.seq` they
 * draw: a cursor can then never skip a change that commits late. SQLite has one writer anyway.
 */
export async function mutate<T>(db: Knex, fn: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
  return db.transaction(async (trx) => {
    if (dbClient(db) === 'pg') await trx.raw('SELECT pg_advisory_xact_lock(?)', [MUTATION_LOCK]);
    return fn(trx);
  });
}

export interface JournalEntry {
  userId: number | null;
  deviceId: number | null;
  action: string;
  /** The node whose state changed: gets a `changes` row that cursors walk. */
  node?: Pick<NodeRow, 'id' | 'owner_id'>;
  /** An audited node that is not part of the change feed. */
  nodeId?: string;
  detail?: Record<string, unknown>;
}

/** Writes the `changes` row (when a node changed) and the `audit` row of a mutation, inside its transaction. */
export async function journal(trx: Knex.Transaction, entry: JournalEntry): Promise<void> {
  const at = Date.now();
  if (entry.node) {
    await trx('changes').insert({ owner_id: entry.node.owner_id, node_id: entry.node.id, action: entry.action, at });
  }
  await trx('audit').insert({
    at,
    user_id: entry.userId,
    device_id: entry.deviceId,
    action: entry.action,
    node_id: entry.node?.id ?? entry.nodeId ?? null,
    detail: entry.detail ? JSON.stringify(entry.detail) : null,
  });
}
