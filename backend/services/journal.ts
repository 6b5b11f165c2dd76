import type { Knex } from 'knex';
import { dbClient } from '../db/connect.js';
import { num, type NodeRow } from '../db/rows.js';
import { changeAudience, type ChangedRow } from '../notify/audience.js';
import type { ChangeHint, Revocation } from '../notify/bus.js';

/** Any constant: the PostgreSQL advisory lock that orders mutations (see `mutate`). */
const MUTATION_LOCK = 7420_0001;

/** What a committed mutation tells the notify bus: who can see its changes, and which devices it revoked. */
export interface Committed {
  hints: ChangeHint[];
  revocations: Revocation[];
}

export type CommitListener = (committed: Committed) => void;

/** Per database: who hears about committed changes (the server's notify bus). */
const commitListeners = new WeakMap<Knex, Set<CommitListener>>();
/** Per open mutation: the `changes` rows it wrote so far, and the devices it revoked. */
const writtenChanges = new WeakMap<Knex.Transaction, ChangedRow[]>();
const revokedDevices = new WeakMap<Knex.Transaction, Revocation[]>();

/**
 * After every mutation on `db` that wrote `changes` rows commits, `listener` gets who can see
 * them and up to which seq (notify/audience.ts). Returns the function that stops it.
 */
export function onCommitted(db: Knex, listener: CommitListener): () => void {
  let listeners = commitListeners.get(db);
  if (!listeners) commitListeners.set(db, (listeners = new Set()));
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/**
 * Runs `fn` in a transaction that may change metadata. On PostgreSQL it first takes a
 * transaction-scoped advisory lock, so mutations commit in the order of the `changes.seq` they
 * draw: a cursor can then never skip a change that commits late. SQLite has one writer anyway.
 *
 * Once the transaction has committed — so a client that pulls /v1/changes on the hint sees the
 * rows — the commit listeners hear of the changes it journaled, once per transaction.
 */
export async function mutate<T>(db: Knex, fn: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
  const listeners = commitListeners.get(db);
  let hints: ChangeHint[] = [];
  const revocations: Revocation[] = [];
  const result = await db.transaction(async (trx) => {
    if (dbClient(db) === 'pg') await trx.raw('SELECT pg_advisory_xact_lock(?)', [MUTATION_LOCK]);
    const written: ChangedRow[] = [];
    writtenChanges.set(trx, written);
    revokedDevices.set(trx, revocations);
    const value = await fn(trx);
    if (written.length > 0 && listeners && listeners.size > 0) hints = await changeAudience(trx, written);
    return value;
  });
  if ((hints.length > 0 || revocations.length > 0) && listeners) {
    for (const listener of listeners) {
      try {
        listener({ hints, revocations });
      } catch {
        // A listener's failure is its own (the bus logs); the mutation has committed and succeeded.
      }
    }
  }
  return result;
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

/** Inside a mutation: once it commits, every backend ends the open connections of this device. */
export function journalRevocation(trx: Knex.Transaction, revocation: Revocation): void {
  revokedDevices.get(trx)?.push(revocation);
}

/** Writes the `changes` row (when a node changed) and the `audit` row of a mutation, inside its transaction. */
export async function journal(trx: Knex.Transaction, entry: JournalEntry): Promise<void> {
  const at = Date.now();
  if (entry.node) {
    const [row] = await trx('changes').insert({ owner_id: entry.node.owner_id, node_id: entry.node.id, action: entry.action, at }).returning('seq');
    const seq = num(typeof row === 'object' ? (row as { seq: unknown }).seq : row);
    writtenChanges.get(trx)?.push({ seq, ownerId: num(entry.node.owner_id), nodeId: entry.node.id });
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
