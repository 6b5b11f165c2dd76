import type { Knex } from 'knex';
import { ApiError } from '../../protocol/errors.js';
import { nodeRow, num, type NodeRow } from '../db/rows.js';
import type { Actor } from './context.js';
import { assertNodeId } from './params.js';

/**
 * Authorization in one place (invariant 8): which nodes and blocks a user can see. Today a user
 * sees exactly what they own; shares (DESIGN §3) extend `canRead` / `readableNodes` here.
 * Every "not yours" is answered exactly like "does not exist".
 */

export function notFound(what = 'node'): ApiError {
  return new ApiError('not_found', `${what} not found`);
}

/** The node with this id if the actor may see it (live or in the trash); 404 otherwise. */
export async function visibleNode(db: Knex, actor: Actor, id: unknown, field = 'id'): Promise<NodeRow> {
  assertNodeId(id, field);
  const row = await db('nodes').where({ id }).first();
  if (!row) throw notFound();
  const node = nodeRow(row);
  if (node.owner_id !== actor.userId) throw notFound();
  return node;
}

/** The node and its ancestors up to the root, nearest first. */
export async function lineage(db: Knex, id: string): Promise<Array<{ id: string; deleted_at: number | null }>> {
  const rows: Array<Record<string, unknown>> = await db
    .withRecursive('anc', ['id', 'parent_id', 'deleted_at', 'depth'], (qb) => {
      qb.select('id', 'parent_id', 'deleted_at', db.raw('0')).from('nodes').where('id', id).unionAll((u) => {
        u.select('n.id', 'n.parent_id', 'n.deleted_at', db.raw('anc.depth + 1')).from('nodes as n').join('anc', 'n.id', 'anc.parent_id');
      });
    })
    .select('id', 'deleted_at')
    .from('anc')
    .orderBy('depth');
  return rows.map((r) => ({ id: String(r.id), deleted_at: r.deleted_at === null ? null : num(r.deleted_at) }));
}

/** Refuses (409) to change a node that is in the trash, itself or through a trashed ancestor. */
export async function assertLive(db: Knex, node: NodeRow): Promise<void> {
  const chain = await lineage(db, node.id);
  if (chain.some((n) => n.deleted_at !== null)) {
    throw new ApiError('node_deleted', `"${node.name}" is in the trash`, { node_id: node.id });
  }
}

/**
 * The `blocks` rows among `batch` the user may read (invariant 4): blocks they uploaded, or that a
 * version of theirs names. Both are looked up by (user, hash) before `blocks` is touched, so the
 * work done, and its timing, does not depend on whether another user holds or names a block:
 * starting from `blocks` ran more of the query exactly when someone did (a 15–25 µs difference a
 * client could measure over a few thousand requests).
 */
function readableRows(db: Knex, actor: Actor, batch: string[]): Knex.QueryBuilder {
  const mine = db
    .select('hash')
    .from('block_owners')
    .where('user_id', actor.userId)
    .whereIn('hash', batch)
    .union((u) => u.select('hash').from('version_blocks').where('owner_id', actor.userId).whereIn('hash', batch));
  return db.select('b.hash', 'b.size', 'b.corrupt_at').from(mine.as('mine')).join('blocks as b', 'b.hash', 'mine.hash');
}

/**
 * The subset of `hashes` the user may use, with their sizes: blocks the store holds intact (a
 * `blocks` row not marked corrupt) that the user may read. What `check` and commits go by: a
 * corrupt block counts as missing, so a client that has its bytes sends them again.
 */
export async function readableBlocks(db: Knex, actor: Actor, hashes: string[]): Promise<Map<string, number>> {
  const readable = new Map<string, number>();
  for (let i = 0; i < hashes.length; i += 500) {
    const rows: Array<Record<string, unknown>> = await readableRows(db, actor, hashes.slice(i, i + 500)).whereNull('corrupt_at');
    for (const row of rows) readable.set(String(row.hash), num(row.size));
  }
  return readable;
}

/** One block the user may read, also when it is marked corrupt (a download then says so); undefined otherwise. */
export async function readableBlock(db: Knex, actor: Actor, hash: string): Promise<{ size: number; corrupt: boolean } | undefined> {
  const row: Record<string, unknown> | undefined = await readableRows(db, actor, [hash]).first();
  return row ? { size: num(row.size), corrupt: row.corrupt_at !== null } : undefined;
}
