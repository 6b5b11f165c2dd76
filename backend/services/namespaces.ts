import type { Knex } from 'knex';
import { ApiError } from '../../protocol/errors.js';
import { num, type NodeRow } from '../db/rows.js';
import { lockNamespaces } from './journal.js';
import { newPublicId } from './ids.js';

/**
 * Namespaces (DESIGN §3): every user's root is one, a shared node becomes one. A node belongs to
 * the namespace of its nearest ancestor that is a namespace root; namespaces do not nest below a
 * user's root (a share inside a shared folder, or around one, is refused), so a share's subtree is
 * exactly its namespace.
 */

/** A new namespace rooted at `root` (a user's root, or a node being shared); returns its id. */
export async function createNamespace(trx: Knex.Transaction, rootId: string, ownerId: number): Promise<number> {
  const [row] = await trx('namespaces').insert({ public_id: newPublicId(), root_node_id: rootId, owner_id: ownerId, created_at: Date.now() }).returning('id');
  return num(typeof row === 'object' ? (row as { id: unknown }).id : row);
}

/** The namespace rooted at this node, if it is a namespace root. */
export async function namespaceRootedAt(db: Knex, nodeId: string): Promise<{ id: number; owner_id: number } | undefined> {
  const row: Record<string, unknown> | undefined = await db('namespaces').where({ root_node_id: nodeId }).first('id', 'owner_id');
  return row ? { id: num(row.id), owner_id: num(row.owner_id) } : undefined;
}

/** The subtree under `node` (itself included) as an SQL set of ids. */
function subtree(db: Knex, nodeId: string): Knex.QueryBuilder {
  return db
    .withRecursive('sub', ['id'], (qb) => {
      qb.select('id').from('nodes').where('id', nodeId).unionAll((u) => {
        u.select('n.id').from('nodes as n').join('sub', 'n.parent_id', 'sub.id');
      });
    })
    .select('id')
    .from('sub');
}

/** Refuses (409) when a namespace root lies under `node` (itself excluded): sharing or moving it would nest namespaces. */
export async function assertNoNamespaceBelow(db: Knex, node: NodeRow, what: string): Promise<void> {
  const nested = await db('namespaces').whereIn('root_node_id', subtree(db, node.id)).whereNot('root_node_id', node.id).first('id');
  if (nested) throw new ApiError('nested_share', `"${node.name}" holds a shared folder: ${what}`);
}

/** Moves `node` and everything under it into namespace `ns` (owned by `ownerId`): nodes and the block references of their versions. */
export async function rehome(trx: Knex.Transaction, node: NodeRow, ns: number, ownerId: number): Promise<void> {
  await trx('nodes').whereIn('id', subtree(trx, node.id)).update({ ns_id: ns, owner_id: ownerId });
  await trx('version_blocks').whereIn('node_id', subtree(trx, node.id)).update({ ns_id: ns, owner_id: ownerId });
}

/**
 * First thing in a mutation: locks the namespaces of these nodes (ids as the request gave them;
 * anything that is not a node is skipped — authorization comes after, on fresh reads). Checks that
 * read before they write (no move into one's own subtree, rmdir of an empty folder, a delete at a
 * version) then see every change committed before them in those namespaces, and none commits
 * between the check and the write: the namespace is the unit of ordering (DESIGN §3).
 */
export async function lockNamespacesOf(trx: Knex.Transaction, ids: unknown[]): Promise<void> {
  const wanted = ids.filter((id): id is string => typeof id === 'string' && /^[0-9a-f-]{36}$/.test(id));
  if (wanted.length === 0) return;
  const rows: Array<{ ns_id: unknown }> = await trx('nodes').whereIn('id', wanted).select('ns_id');
  await lockNamespaces(trx, rows.map((r) => num(r.ns_id)));
}
