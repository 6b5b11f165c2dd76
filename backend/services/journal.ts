import type { Knex } from 'knex';
import { dbClient, writeTransaction } from '../db/connect.js';
import { num, type NodeRow } from '../db/rows.js';
import { changeAudience, type ChangedRow } from '../notify/audience.js';
import type { ChangeHint, Revocation } from '../notify/bus.js';

/** Any constant: the PostgreSQL advisory lock of the old global journal (see `globalLockSwitch`). */
const MUTATION_LOCK = 7420_0001;

/**
 * `STRATUS_GLOBAL_MUTATION_LOCK=1` makes every mutation on PostgreSQL wait on one advisory lock
 * again, as the global journal did: only so `npm run bench` can measure before against after in
 * one run. Never needed for correctness: each namespace's row lock orders its own changes.
 */
function globalLockSwitch(): boolean {
  return process.env.STRATUS_GLOBAL_MUTATION_LOCK === '1';
}

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
 * Runs `fn` in a transaction that may change metadata. Each change it journals draws the next seq
 * of its namespace, which locks that namespace's row until the commit (`journal`): within a
 * namespace, seq order is commit order, so a cursor never skips a change that commits late;
 * mutations of different namespaces never wait for each other. SQLite has one writer anyway.
 *
 * Once the transaction has committed — so a client that pulls /v1/changes on the hint sees the
 * rows — the commit listeners hear of the changes it journaled, once per transaction.
 *
 * Given the transaction of a mutation in progress instead of the database (a batch: services/
 * batch.ts), `fn` runs in a savepoint of it: if `fn` fails, what it wrote is undone and the
 * mutation goes on; if it succeeds, its changes are heard of with the mutation's, at its commit.
 */
export async function mutate<T>(db: Knex, fn: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
  const outer = db.isTransaction ? (db as Knex.Transaction) : undefined;
  if (outer && writtenChanges.has(outer)) return inSavepoint(outer, fn);
  const listeners = commitListeners.get(db);
  let hints: ChangeHint[] = [];
  const revocations: Revocation[] = [];
  const result = await writeTransaction(db, async (trx) => {
    if (dbClient(db) === 'pg' && globalLockSwitch()) await trx.raw('SELECT pg_advisory_xact_lock(?)', [MUTATION_LOCK]);
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

async function inSavepoint<T>(outer: Knex.Transaction, fn: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
  const written: ChangedRow[] = [];
  const revocations: Revocation[] = [];
  const value = await outer.transaction(async (trx) => {
    writtenChanges.set(trx, written);
    revokedDevices.set(trx, revocations);
    return fn(trx);
  });
  writtenChanges.get(outer)!.push(...written);
  revokedDevices.get(outer)!.push(...revocations);
  return value;
}

export interface JournalEntry {
  userId: number | null;
  deviceId: number | null;
  action: string;
  /** The node whose state changed: gets a `changes` row, with this state, that cursors walk. */
  node?: Pick<NodeRow, 'id' | 'ns_id' | 'parent_id' | 'name' | 'head_version' | 'deleted_at'>;
  /** The namespace whose journal gets the row, when not the node's own (a node leaving one; a share's entry in a grantee's tree). */
  ns?: number;
  /** An audited node that is not part of the change feed. */
  nodeId?: string;
  detail?: Record<string, unknown>;
}

/**
 * Draws the next seq of a namespace. The row stays locked until the transaction ends (PostgreSQL),
 * so the next change of this namespace waits for this one to commit or roll back: a reader never
 * sees seq N+1 without N.
 */
async function nextSeq(trx: Knex.Transaction, ns: number, count = 1): Promise<number> {
  const rows: Array<{ next_seq: unknown }> = await trx('namespaces').where({ id: ns }).increment('next_seq', count).returning('next_seq');
  if (rows.length === 0) throw new Error(`namespace ${ns} does not exist`);
  return num(rows[0]!.next_seq) - count;
}

/** Rows per multi-row INSERT: well under SQLite's 32,766 bound parameters for the widest table. */
export const INSERT_CHUNK = 500;

/** Inserts `rows` into `table`, INSERT_CHUNK rows per statement. */
export async function insertChunked(trx: Knex.Transaction, table: string, rows: readonly object[]): Promise<void> {
  for (let i = 0; i < rows.length; i += INSERT_CHUNK) await trx(table).insert(rows.slice(i, i + INSERT_CHUNK));
}

/**
 * Locks these namespaces' rows in one fixed order (ascending id) before a mutation that journals in
 * several (a move across namespaces, a new share): two such mutations cannot deadlock.
 */
export async function lockNamespaces(trx: Knex.Transaction, ids: Iterable<number>): Promise<void> {
  const sorted = [...new Set(ids)].sort((a, b) => a - b);
  if (dbClient(trx) !== 'pg') return;
  for (const id of sorted) await trx.raw('SELECT 1 FROM namespaces WHERE id = ? FOR UPDATE', [id]);
}

/** Inside a mutation: once it commits, every backend ends the open connections of this device. */
export function journalRevocation(trx: Knex.Transaction, revocation: Revocation): void {
  revokedDevices.get(trx)?.push(revocation);
}

/**
 * `journal` of many entries at once, in this order (a batch's creates): one seq draw per
 * namespace for all its entries, and multi-row inserts.
 */
export async function journalMany(trx: Knex.Transaction, entries: readonly JournalEntry[]): Promise<void> {
  const at = Date.now();
  const byNs = new Map<number, JournalEntry[]>();
  for (const entry of entries) {
    if (!entry.node) continue;
    const ns = entry.ns ?? entry.node.ns_id;
    byNs.set(ns, [...(byNs.get(ns) ?? []), entry]);
  }
  const changes: Array<Record<string, unknown>> = [];
  for (const [ns, list] of byNs) {
    const first = await nextSeq(trx, ns, list.length);
    list.forEach(({ node, action }, i) => {
      changes.push({ ns_id: ns, seq: first + i, node_id: node!.id, action, parent_id: node!.parent_id, name: node!.name, head_version: node!.head_version, deleted_at: node!.deleted_at, at });
      writtenChanges.get(trx)?.push({ ns, seq: first + i, nodeId: node!.id });
    });
  }
  await insertChunked(trx, 'changes', changes);
  await insertChunked(trx, 'audit', entries.map(auditRow(at)));
}

function auditRow(at: number): (entry: JournalEntry) => Record<string, unknown> {
  return (entry) => ({
    at,
    user_id: entry.userId,
    device_id: entry.deviceId,
    action: entry.action,
    node_id: entry.node?.id ?? entry.nodeId ?? null,
    detail: entry.detail ? JSON.stringify(entry.detail) : null,
  });
}

/** Writes the `changes` row (when a node changed) and the `audit` row of a mutation, inside its transaction. */
export async function journal(trx: Knex.Transaction, entry: JournalEntry): Promise<void> {
  const at = Date.now();
  if (entry.node) {
    const { node } = entry;
    const ns = entry.ns ?? node.ns_id;
    const seq = await nextSeq(trx, ns);
    await trx('changes').insert({
      ns_id: ns,
      seq,
      node_id: node.id,
      action: entry.action,
      parent_id: node.parent_id,
      name: node.name,
      head_version: node.head_version,
      deleted_at: node.deleted_at,
      at,
    });
    writtenChanges.get(trx)?.push({ ns, seq, nodeId: node.id });
  }
  await trx('audit').insert(auditRow(at)(entry));
}
