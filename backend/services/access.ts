import type { Knex } from 'knex';
import { ApiError } from '../../protocol/errors.js';
import type { NodeInfo, Role } from '../../protocol/types.js';
import { nodeInfo, nodeRow, num, type NodeRow } from '../db/rows.js';
import type { Actor } from './context.js';
import { assertNodeId } from './params.js';

/**
 * Authorization in one place (DESIGN §4 invariants 4, 8, 9): which nodes and blocks a user can see
 * and change. A user sees the namespaces they own (their root, and folders of theirs they shared)
 * and those shared with them (a live, unexpired share on the namespace's root), with the share's
 * role; everything under a namespace's root inherits it, evaluated at request time. Routes, the
 * change feed, the events audience and block reads all ask here. Every "not yours" is answered
 * exactly like "does not exist".
 */

/** Where a share shows in its grantee's tree. */
export interface Mount {
  shareId: number;
  ns: number;
  parent_id: string;
  name: string;
  role: Role;
}

/** What one user can see, read once per question. */
export interface View {
  userId: number;
  /** The user's own root folder and its namespace. */
  rootId: string;
  rootNs: number;
  /** Every namespace the user can see, with their role in it. */
  roles: Map<number, Role>;
  /** Shares with the user, by the shared node's id: where each shows in the user's tree. */
  mounts: Map<string, Mount>;
}

export function notFound(what = 'node'): ApiError {
  return new ApiError('not_found', `${what} not found`);
}

/** Live shares: not expired at `now`. */
function liveShares(q: Knex.QueryBuilder, now: number): Knex.QueryBuilder {
  return q.where((w) => w.whereNull('s.expires_at').orWhere('s.expires_at', '>', now));
}

/** The user's view: their namespaces and the ones shared with them. */
export async function viewOf(db: Knex, actor: Pick<Actor, 'userId'>): Promise<View> {
  const now = Date.now();
  const owned: Array<Record<string, unknown>> = await db('namespaces as ns')
    .join('nodes as r', 'r.id', 'ns.root_node_id')
    .where('ns.owner_id', actor.userId)
    .select('ns.id', 'r.id as root', 'r.parent_id as root_parent');
  const shared: Array<Record<string, unknown>> = await liveShares(
    db('shares as s').join('namespaces as ns', 'ns.id', 's.ns_id').where('s.grantee_id', actor.userId),
    now,
  ).select('s.id', 's.ns_id', 's.role', 's.mount_parent_id', 's.mount_name', 'ns.root_node_id');
  const roles = new Map<number, Role>();
  let rootId: string | undefined;
  let rootNs = 0;
  for (const row of owned) {
    roles.set(num(row.id), 'owner');
    if (row.root_parent === null) [rootId, rootNs] = [String(row.root), num(row.id)];
  }
  if (!rootId) throw notFound();
  const mounts = new Map<string, Mount>();
  for (const row of shared) {
    const ns = num(row.ns_id);
    const role = String(row.role) as Role;
    if (roles.get(ns) !== 'owner') roles.set(ns, role);
    if (row.mount_parent_id !== null) {
      mounts.set(String(row.root_node_id), { shareId: num(row.id), ns, parent_id: String(row.mount_parent_id), name: String(row.mount_name), role });
    }
  }
  return { userId: actor.userId, rootId, rootNs, roles, mounts };
}

/** The user's role on a node, undefined when they cannot see it. */
export function roleOn(view: View, node: Pick<NodeRow, 'ns_id'>): Role | undefined {
  return view.roles.get(node.ns_id);
}

/** The share through which the user sees this node as an entry of their own tree, if it is one. */
export function mountOf(view: View, node: Pick<NodeRow, 'id' | 'owner_id'>): Mount | undefined {
  return node.owner_id === view.userId ? undefined : view.mounts.get(node.id);
}

/** The node as this user sees it: with their role, and a share's root where it shows in their tree. */
export function infoFor(view: View, node: NodeRow): NodeInfo {
  const mount = mountOf(view, node);
  const info = { ...nodeInfo(node), role: roleOn(view, node) ?? 'viewer' };
  return mount ? { ...info, parent_id: mount.parent_id, name: mount.name, share_entry: true } : info;
}

/** The node with this id if the user may see it (live or in the trash); 404 otherwise. */
export async function visibleIn(db: Knex, view: View, id: unknown, field = 'id'): Promise<NodeRow> {
  assertNodeId(id, field);
  const row = await db('nodes').where({ id }).first();
  // A purged node is a tombstone: gone for everyone.
  if (!row || (row.purged_at !== null && row.purged_at !== undefined)) throw notFound();
  const node = nodeRow(row);
  if (!roleOn(view, node)) throw notFound();
  return node;
}

/** `visibleIn` for a caller that needs nothing else of the view. */
export async function visibleNode(db: Knex, actor: Actor, id: unknown, field = 'id'): Promise<NodeRow> {
  return visibleIn(db, await viewOf(db, actor), id, field);
}

/** Refuses (403) a change by a user who may only read the node. */
export function assertMayWrite(view: View, node: NodeRow): void {
  const role = roleOn(view, node);
  if (role === 'editor' || role === 'owner') return;
  throw new ApiError('forbidden', `"${mountOf(view, node)?.name ?? node.name}" is shared with you read-only`);
}

/** A node the user may change (editor or owner); 404 when they cannot see it, 403 when they may only read it. */
export async function writableNode(db: Knex, actor: Actor, id: unknown, field = 'id'): Promise<NodeRow> {
  const view = await viewOf(db, actor);
  const node = await visibleIn(db, view, id, field);
  assertMayWrite(view, node);
  return node;
}

/** Refuses (403) sharing or changing the roles of a node by anyone but its owners. */
export function assertOwner(view: View, node: NodeRow): void {
  if (roleOn(view, node) !== 'owner') throw new ApiError('forbidden', `only the owners of "${node.name}" can share it`);
}

/** The users who can see these namespaces now: their owners and live shares' grantees. */
export async function namespaceAudience(db: Knex, namespaces: number[]): Promise<number[]> {
  if (namespaces.length === 0) return [];
  const users = new Set<number>();
  const owners: Array<{ owner_id: unknown }> = await db('namespaces').whereIn('id', namespaces).select('owner_id');
  for (const row of owners) users.add(num(row.owner_id));
  const grantees: Array<{ grantee_id: unknown }> = await liveShares(db('shares as s').whereIn('s.ns_id', namespaces).whereNotNull('s.grantee_id'), Date.now()).select('s.grantee_id');
  for (const row of grantees) users.add(num(row.grantee_id));
  return [...users];
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
 * version in a namespace they can see names. Both are looked up from the user's side — by (user,
 * hash) and by (namespace, hash) — before `blocks` is touched, so the work done, and its timing,
 * does not depend on whether another user holds or names a block: starting from `blocks` ran more
 * of the query exactly when someone did (a 15–25 µs difference a client could measure over a few
 * thousand requests).
 */
function readableRows(db: Knex, actor: Actor, view: View, batch: string[]): Knex.QueryBuilder {
  const mine = db
    .select('hash')
    .from('block_owners')
    .where('user_id', actor.userId)
    .whereIn('hash', batch)
    .union((u) => u.select('hash').from('version_blocks').whereIn('ns_id', [...view.roles.keys()]).whereIn('hash', batch));
  // Only a block whose bytes stand (not being published by an upload, nor removed by the GC).
  return db.select('b.hash', 'b.size', 'b.corrupt_at').from(mine.as('mine')).join('blocks as b', 'b.hash', 'mine.hash').where('b.state', 'present');
}

/**
 * The subset of `hashes` the user may use, with their sizes: blocks the store holds intact (a
 * `blocks` row not marked corrupt) that the user may read. What `check` and commits go by: a
 * corrupt block counts as missing, so a client that has its bytes sends them again.
 */
export async function readableBlocks(db: Knex, actor: Actor, hashes: string[]): Promise<Map<string, number>> {
  const view = await viewOf(db, actor);
  const readable = new Map<string, number>();
  for (let i = 0; i < hashes.length; i += 500) {
    const rows: Array<Record<string, unknown>> = await readableRows(db, actor, view, hashes.slice(i, i + 500)).whereNull('corrupt_at');
    for (const row of rows) readable.set(String(row.hash), num(row.size));
  }
  return readable;
}

/** One block the user may read, also when it is marked corrupt (a download then says so); undefined otherwise. */
export async function readableBlock(db: Knex, actor: Actor, hash: string): Promise<{ size: number; corrupt: boolean } | undefined> {
  const row: Record<string, unknown> | undefined = await readableRows(db, actor, await viewOf(db, actor), [hash]).first();
  return row ? { size: num(row.size), corrupt: row.corrupt_at !== null } : undefined;
}

/**
 * Link shares (DESIGN §3): the node a link opens, found by the hash of its token — the root of a
 * live (unexpired) link share, itself live (neither it nor a folder above it in the trash) — or
 * undefined for a token that is unknown, revoked or expired alike. The link reaches that node and
 * what `linkReaches` allows under it, read-only; nothing above it, nothing else.
 */
export async function linkShareRoot(db: Knex, tokenHash: string): Promise<NodeRow | undefined> {
  const row: Record<string, unknown> | undefined = await liveShares(
    db('shares as s').join('namespaces as ns', 'ns.id', 's.ns_id').join('nodes as r', 'r.id', 'ns.root_node_id').where('s.link_token_hash', tokenHash).whereNull('s.grantee_id'),
    Date.now(),
  ).first('r.*');
  if (!row) return undefined;
  const root = nodeRow(row);
  if ((await lineage(db, root.id)).some((n) => n.deleted_at !== null)) return undefined;
  return root;
}

/** Whether a link opening `root` may show `node`, a node found by walking down from `root`: live, and in the root's namespace. */
export function linkReaches(root: NodeRow, node: NodeRow): boolean {
  return node.deleted_at === null && node.ns_id === root.ns_id;
}
