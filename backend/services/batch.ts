import type { Knex } from 'knex';
import { z } from 'zod';
import { ApiError } from '../../protocol/errors.js';
import type { BatchOp, BatchResponse, BatchResult, NodeInfo } from '../../protocol/types.js';
import { nodeRow, type NodeRow } from '../db/rows.js';
import { infoFor, viewOf, type View } from './access.js';
import type { Actor, Backend } from './context.js';
import { INSERT_CHUNK, insertChunked, journalMany, mutate } from './journal.js';
import { lockNamespacesOf } from './namespaces.js';
import { createEntry, deleteNode, exists, liveChild, newNodeRow, planCreate, targetDir, updateNode } from './nodes.js';
import { parseBody } from './validate.js';

/**
 * POST /v1/batch: creates, updates and deletes of nodes in one request and one transaction, for
 * a client with many small changes to send (a drive after `tar x`, a sync tool): each op is
 * checked and applied exactly as its own request would be, in order, in a savepoint — an op that
 * fails is undone alone and answered with its error; the others stand. So a batch is many
 * requests made cheap (one round trip, one commit, one hint), never a new kind of atomicity.
 *
 * An op's `id` or `parent_id` may be `$N`: the id of the node op N of this batch returned (N
 * earlier, and successful; otherwise the op fails with 400 bad_request).
 *
 * The namespaces of every node the ops name are locked first, in one order (PostgreSQL), so two
 * batches cannot deadlock over them; a node made in the batch lives in a namespace locked already.
 *
 * Consecutive creates (a `tar x`, a new tree) take a faster path with the same checks (CreateRun):
 * one view, each folder checked once, the names taken in a folder read in one query, the rows
 * and the journal written with multi-row inserts once the run ends. Every check happens before
 * anything is written, so a refused create needs no savepoint.
 */

const opSchema = z.discriminatedUnion('op', [
  z.object({ op: z.literal('create'), node: z.record(z.string(), z.unknown()) }).strict(),
  z.object({ op: z.literal('update'), id: z.string(), node: z.record(z.string(), z.unknown()) }).strict(),
  z.object({ op: z.literal('delete'), id: z.string(), if_version: z.number().optional(), if_empty: z.boolean().optional() }).strict(),
]);

const REF = /^\$(\d{1,6})$/;

/**
 * What a batch costs in requests: a create in a run of creates costs the server about a tenth of
 * its own request (one folder check, one query for taken names, multi-row inserts: ~3,200/s against
 * ~130/s singly), an update or delete half (its own savepoint, no HTTP round trip or auth).
 */
export function batchCost(ops: readonly BatchOp[]): number {
  const creates = ops.filter((o) => o.op === 'create').length;
  return Math.max(1, Math.ceil(creates / 10 + (ops.length - creates) / 2));
}

export async function runBatch(backend: Backend, actor: Actor, body: unknown): Promise<BatchResponse> {
  const max = backend.settings.limits.max_batch_ops;
  const { ops } = parseBody(z.object({ ops: z.array(opSchema).min(1).max(max) }).strict(), body) as { ops: BatchOp[] };
  // A batch costs the rate limit what its ops cost the server, in requests (the request itself was counted once already).
  const extra = batchCost(ops) - 1;
  if (extra > 0) await backend.rates.request(actor.userId, extra);
  const named = ops.flatMap((op) => (op.op === 'create' ? [op.node.parent_id] : op.op === 'update' ? [op.id, op.node.parent_id] : [op.id]));
  return mutate(backend.db, async (trx) => {
    await lockNamespacesOf(trx, named);
    const inBatch: Backend = { ...backend, db: trx };
    const made: Array<NodeInfo | undefined> = [];
    const results: BatchResult[] = [];
    /** Runs one op: its node, or its refusal (an ApiError); anything else fails the whole batch. */
    const outcome = async (status: number, fn: () => Promise<NodeInfo>) => {
      try {
        const node = await fn();
        made.push(node);
        results.push({ status, node });
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        made.push(undefined);
        results.push({ status: err.status, ...err.toBody() });
      }
    };
    let run: CreateRun | undefined;
    for (const [i, op] of ops.entries()) {
      const id = (ref: unknown) => resolve(ref, i, made);
      if (op.op === 'create') {
        const creates = (run ??= new CreateRun(trx, actor, await viewOf(trx, actor), ops.slice(i)));
        await outcome(201, () => creates.add(withParent(op.node, id)));
        continue;
      }
      await run?.flush();
      run = undefined;
      await outcome(200, () => apply(inBatch, actor, op, id));
    }
    await run?.flush();
    return { results };
  });
}

/**
 * Creates in a row of a batch: checked as createNode checks them (a live folder the caller may
 * write, a free name — also of the creates before it in the run), written together by `flush`.
 */
class CreateRun {
  /** Folders checked as targets, and the ones made in this run. */
  private readonly folders = new Map<string, NodeRow>();
  /** Per folder: the live nodes of the names this run makes there (read once), and what the run made. */
  private readonly names = new Map<string, Map<string, NodeRow>>();
  /** Folders made in this run: nothing in them but what the run made. */
  private readonly madeHere = new Set<string>();
  private readonly rows: NodeRow[] = [];

  constructor(
    private readonly trx: Knex.Transaction,
    private readonly actor: Actor,
    private readonly view: View,
    /** The ops from this run's first on: which names the run will look up in each folder. */
    private readonly ahead: readonly BatchOp[],
  ) {}

  async add(body: unknown): Promise<NodeInfo> {
    const plan = planCreate(body);
    const parent = await this.folder(plan.parentId);
    const taken = await this.namesIn(parent.id);
    const existing = taken.get(plan.name) ?? (this.madeHere.has(parent.id) ? null : await this.mountAt(parent.id, plan.name));
    if (existing) throw exists(plan.name, existing);
    const node = newNodeRow(plan, parent, Date.now());
    this.rows.push(node);
    taken.set(node.name, node);
    if (node.kind === 'dir') {
      this.folders.set(node.id, node);
      this.names.set(node.id, new Map());
      this.madeHere.add(node.id);
    }
    return infoFor(this.view, node);
  }

  async flush(): Promise<void> {
    if (this.rows.length === 0) return;
    await insertChunked(this.trx, 'nodes', this.rows);
    await journalMany(
      this.trx,
      this.rows.map((node) => createEntry(this.actor, node)),
    );
    this.rows.length = 0;
  }

  private async folder(id: string): Promise<NodeRow> {
    let dir = this.folders.get(id);
    if (!dir) this.folders.set(id, (dir = await targetDir(this.trx, this.view, id)));
    return dir;
  }

  /** The live nodes in folder `id` named as this run's creates there name theirs: one query per folder (chunked). */
  private async namesIn(id: string): Promise<Map<string, NodeRow>> {
    let taken = this.names.get(id);
    if (taken) return taken;
    this.names.set(id, (taken = new Map()));
    const wanted = [...new Set(this.ahead.flatMap((op) => (op.op === 'create' && op.node.parent_id === id && typeof op.node.name === 'string' ? [op.node.name] : [])))];
    for (let i = 0; i < wanted.length; i += INSERT_CHUNK) {
      const rows: Array<Record<string, unknown>> = await this.trx('nodes').where({ parent_id: id }).whereIn('name', wanted.slice(i, i + INSERT_CHUNK)).whereNull('deleted_at');
      for (const row of rows) taken.set(String(row.name), nodeRow(row));
    }
    return taken;
  }

  /** A share entry of the caller's at that name (or, for a name not read ahead, any live node). */
  private async mountAt(parentId: string, name: string): Promise<NodeRow | null> {
    const readAhead = this.ahead.some((op) => op.op === 'create' && op.node.parent_id === parentId && op.node.name === name);
    if (readAhead && ![...this.view.mounts.values()].some((m) => m.parent_id === parentId && m.name === name)) return null;
    return liveChild(this.trx, this.view, parentId, name);
  }
}

function apply(backend: Backend, actor: Actor, op: Exclude<BatchOp, { op: 'create' }>, id: (ref: unknown) => unknown): Promise<NodeInfo> {
  switch (op.op) {
    case 'update':
      return updateNode(backend, actor, id(op.id) as string, withParent(op.node, id));
    case 'delete':
      return deleteNode(backend, actor, id(op.id) as string, {
        ...(op.if_version !== undefined && { if_version: String(op.if_version) }),
        ...(op.if_empty && { if_empty: 'true' }),
      });
  }
}

function withParent<T extends object>(node: T, id: (ref: unknown) => unknown): T {
  return 'parent_id' in node ? { ...node, parent_id: id(node.parent_id) } : node;
}

/** `$N` → the id op N made; anything else as it is. */
function resolve(ref: unknown, at: number, made: Array<NodeInfo | undefined>): unknown {
  const m = typeof ref === 'string' ? REF.exec(ref) : null;
  if (!m) return ref;
  const n = Number(m[1]);
  if (n >= at) throw new ApiError('bad_request', `${ref} names op ${n}, which does not come before op ${at}`);
  const node = made[n];
  if (!node) throw new ApiError('bad_request', `${ref} names op ${n}, which failed`);
  return node.id;
}
