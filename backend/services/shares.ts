import crypto from 'node:crypto';
import type { Knex } from 'knex';
import { z } from 'zod';
import { ApiError } from '../../protocol/errors.js';
import type { Role, ShareInfo, SharesPage } from '../../protocol/types.js';
import { iso, isoOrNull, num, type NodeRow } from '../db/rows.js';
import { assertLive, assertOwner, notFound, viewOf, visibleIn, type View } from './access.js';
import type { Actor, Backend } from './context.js';
import { newPublicId } from './ids.js';
import { journal, lockNamespaces, mutate } from './journal.js';
import { assertNoNamespaceBelow, createNamespace, lockNamespacesOf, namespaceRootedAt, rehome } from './namespaces.js';
import { assertPublicId } from './params.js';
import { parseBody } from './validate.js';

/**
 * Shares (DESIGN §3): an owner grants a user a role on a folder or file — or makes a link (viewer)
 * — and the node becomes a namespace root, so everything under it is evaluated through that share
 * at request time (access.ts). A grantee sees the share at their root under its name (made unique
 * there, e.g. `Photos (from alice)`); granting, changing and revoking are journaled in the
 * grantee's root namespace, so their devices follow live. Shares inside a shared folder, or
 * around one, are refused (409).
 */

const grantSchema = z.union([
  z.object({
    user: z.string().min(1).max(64),
    role: z.enum(['viewer', 'editor', 'owner']),
    expires_at: z.number().int().positive().optional(),
  }).strict(),
  z.object({ link: z.literal(true), expires_at: z.number().int().positive().optional() }).strict(),
]);

/** A link share's token: what the URL holds. Only its hash is stored. */
export function linkTokenHash(token: string): string {
  return crypto.createHash('sha256').update(token).digest('hex');
}

/** POST /v1/nodes/:id/shares — grant a user a role (or change it), or make a link. */
export async function createShare(backend: Backend, actor: Actor, id: string, body: unknown): Promise<ShareInfo> {
  const req = parseBody(grantSchema, body);
  if (req.expires_at !== undefined && req.expires_at <= Date.now()) throw new ApiError('bad_request', 'expires_at is in the past');
  return mutate(backend.db, async (trx) => {
    await lockNamespacesOf(trx, [id]);
    const view = await viewOf(trx, actor);
    const node = await visibleIn(trx, view, id);
    assertOwner(view, node);
    await assertLive(trx, node);
    const ns = await shareableNamespace(trx, node, actor);
    const owner = await userName(trx, node.owner_id);
    const now = Date.now();
    if ('link' in req) {
      const token = crypto.randomBytes(24).toString('base64url');
      const row = { public_id: newPublicId(), ns_id: ns, grantee_id: null, role: 'viewer', created_by: actor.userId, created_at: now, expires_at: req.expires_at ?? null, link_token_hash: linkTokenHash(token) };
      await trx('shares').insert(row);
      await journal(trx, { userId: actor.userId, deviceId: actor.deviceId, action: 'share.link', nodeId: node.id, detail: { share: row.public_id, expires_at: row.expires_at } });
      return { ...shareInfo(row, node.name, null, owner, node.id), url: `/s/${token}` };
    }
    const grantee = await trx('users').where({ name: req.user }).first('id', 'name');
    if (!grantee) throw new ApiError('not_found', `no user "${req.user}"`);
    const granteeId = num(grantee.id);
    if (granteeId === node.owner_id) throw new ApiError('bad_request', `"${node.name}" is ${req.user}'s own`);
    const granteeView = await viewOf(trx, { userId: granteeId });
    await lockNamespaces(trx, [ns, granteeView.rootNs]);
    const existing = await trx('shares').where({ ns_id: ns, grantee_id: granteeId }).first();
    let row: Record<string, unknown>;
    if (existing) {
      row = { ...existing, role: req.role, expires_at: req.expires_at ?? null };
      await trx('shares').where({ id: existing.id }).update({ role: req.role, expires_at: req.expires_at ?? null });
    } else {
      const name = await freeEntryName(trx, granteeView, node.name, owner);
      row = { public_id: newPublicId(), ns_id: ns, grantee_id: granteeId, role: req.role, created_by: actor.userId, created_at: now, expires_at: req.expires_at ?? null, link_token_hash: null, mount_parent_id: granteeView.rootId, mount_name: name };
      await trx('shares').insert(row);
    }
    await journal(trx, {
      userId: actor.userId,
      deviceId: actor.deviceId,
      action: existing ? 'share.role' : 'share.grant',
      node: { ...node, parent_id: String(row.mount_parent_id), name: String(row.mount_name) },
      ns: granteeView.rootNs,
      detail: { share: row.public_id, user: grantee.name, role: req.role, expires_at: row.expires_at },
    });
    return shareInfo(row, node.name, String(grantee.name), owner, node.id);
  });
}

/**
 * The namespace a share of `node` goes to: the node's own when it is shared already; else a new
 * one rooted at it, which its subtree moves into. Refused inside another shared folder, or around
 * one (409), and for a root folder (400).
 */
async function shareableNamespace(trx: Knex.Transaction, node: NodeRow, actor: Actor): Promise<number> {
  if (node.parent_id === null) throw new ApiError('bad_request', 'a root folder cannot be shared');
  const own = await namespaceRootedAt(trx, node.id);
  if (own) return own.id;
  const home = await trx('namespaces as ns').join('nodes as r', 'r.id', 'ns.root_node_id').where('ns.id', node.ns_id).first('r.parent_id');
  if (home?.parent_id !== null) throw new ApiError('nested_share', `"${node.name}" is inside a shared folder: share that folder instead`);
  await assertNoNamespaceBelow(trx, node, 'share the folders in it instead, or stop sharing them first');
  const ns = await createNamespace(trx, node.id, node.owner_id);
  await rehome(trx, node, ns, node.owner_id);
  await journal(trx, { userId: actor.userId, deviceId: actor.deviceId, action: 'share.namespace', node: { ...node, ns_id: ns } });
  return ns;
}

/** `name` in the grantee's root, or `name (from OWNER)`, `name (from OWNER 2)`… — the first free. */
async function freeEntryName(trx: Knex.Transaction, view: View, name: string, owner: string): Promise<string> {
  const taken = async (n: string) =>
    (await trx('nodes').where({ parent_id: view.rootId, name: n }).whereNull('deleted_at').first('id')) !== undefined ||
    [...view.mounts.values()].some((m) => m.parent_id === view.rootId && m.name === n);
  if (!(await taken(name))) return name;
  const dot = name.lastIndexOf('.');
  const [stem, ext] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ''];
  for (let i = 1; ; i++) {
    const candidate = `${stem} (from ${owner}${i > 1 ? ` ${i}` : ''})${ext}`;
    if (!(await taken(candidate))) return candidate;
  }
}

/** GET /v1/nodes/:id/shares — the node's shares (its owners only). */
export async function listNodeShares(backend: Backend, actor: Actor, id: string): Promise<{ shares: ShareInfo[] }> {
  const view = await viewOf(backend.db, actor);
  const node = await visibleIn(backend.db, view, id);
  assertOwner(view, node);
  const own = await namespaceRootedAt(backend.db, node.id);
  if (!own) return { shares: [] };
  return { shares: await sharesWhere(backend.db, (q) => q.where('s.ns_id', own.id), true) };
}

/** DELETE /v1/nodes/:id/shares/:share — revoke a share (its owners only); the grantee's devices drop it live. */
export async function deleteShare(backend: Backend, actor: Actor, id: string, shareId: unknown): Promise<ShareInfo> {
  assertPublicId(shareId, 'share');
  return mutate(backend.db, async (trx) => {
    const view = await viewOf(trx, actor);
    const node = await visibleIn(trx, view, id);
    assertOwner(view, node);
    const [share] = await sharesWhere(trx, (q) => q.where('s.public_id', shareId).where('ns.root_node_id', node.id));
    const row = await trx('shares').where({ public_id: shareId }).first();
    if (!share || !row) throw notFound('share');
    await trx('shares').where({ id: row.id }).delete();
    const entry = row.grantee_id === null ? undefined : { ns: (await viewOf(trx, { userId: num(row.grantee_id) })).rootNs };
    await journal(trx, {
      userId: actor.userId,
      deviceId: actor.deviceId,
      action: 'share.revoke',
      ...(entry ? { node: { ...node, parent_id: row.mount_parent_id as string | null, name: String(row.mount_name), deleted_at: Date.now() }, ns: entry.ns } : { nodeId: node.id }),
      detail: { share: shareId, user: share.user },
    });
    return share;
  });
}

/** GET /v1/shares — what is shared with the caller, and what the caller shares. */
export async function listShares(backend: Backend, actor: Actor): Promise<SharesPage> {
  const now = Date.now();
  const mine = await sharesWhere(backend.db, (q) => q.where('s.grantee_id', actor.userId).where((w) => w.whereNull('s.expires_at').orWhere('s.expires_at', '>', now)));
  const byMe = await sharesWhere(backend.db, (q) => q.where('ns.owner_id', actor.userId), true);
  return { shared_with_me: mine, shared_by_me: byMe };
}

/** Shares matching `where`; named as the grantee's entry, or (`asOwner`) as the owner's node is. */
async function sharesWhere(db: Knex, where: (q: Knex.QueryBuilder) => Knex.QueryBuilder, asOwner = false): Promise<ShareInfo[]> {
  const rows: Array<Record<string, unknown>> = await where(
    db('shares as s')
      .join('namespaces as ns', 'ns.id', 's.ns_id')
      .join('nodes as n', 'n.id', 'ns.root_node_id')
      .join('users as o', 'o.id', 'ns.owner_id')
      .leftJoin('users as g', 'g.id', 's.grantee_id'),
  )
    .orderBy('s.id')
    .select('s.*', 'n.id as node_id', 'n.name as node_name', 'o.name as owner_name', 'g.name as grantee_name');
  return rows.map((r) => shareInfo(r, String(asOwner ? r.node_name : (r.mount_name ?? r.node_name)), r.grantee_name === null ? null : String(r.grantee_name), String(r.owner_name), String(r.node_id)));
}

function shareInfo(row: Record<string, unknown>, name: string, user: string | null, owner: string, nodeId: string): ShareInfo {
  return {
    id: String(row.public_id),
    node_id: nodeId,
    name,
    role: String(row.role) as Role,
    user,
    owner,
    created_at: iso(row.created_at),
    expires_at: isoOrNull(row.expires_at),
  };
}

async function userName(db: Knex, id: number): Promise<string> {
  const row = await db('users').where({ id }).first('name');
  return String(row?.name ?? '');
}
