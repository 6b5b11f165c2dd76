import type { Knex } from 'knex';
import { z } from 'zod';
import { ApiError } from '../../protocol/errors.js';
import { LINK_MODE, assertValidTarget } from '../../protocol/link-target.js';
import { assertValidName } from '../../protocol/names.js';
import type { ChildrenPage, NodeInfo } from '../../protocol/types.js';
import { dbClient } from '../db/connect.js';
import { isUniqueViolation } from '../db/errors.js';
import { nodeInfo, nodeRow, type NodeRow } from '../db/rows.js';
import { assertLive, assertMayWrite, infoFor, lineage, mountOf, notFound, roleOn, viewOf, visibleIn, type View } from './access.js';
import type { Actor, Backend } from './context.js';
import { newNodeId } from './ids.js';
import { pageLimit, parseWhole } from './params.js';
import { journal, lockNamespaces, mutate, type JournalEntry } from './journal.js';
import { assertNoNamespaceBelow, lockNamespacesOf, namespaceRootedAt, rehome } from './namespaces.js';
import { parseBody } from './validate.js';
import { appendVersion, storedManifest } from './versions.js';

const mtimeSchema = z.number().int().min(0).max(8.64e15);
const modeSchema = z.number().int().min(0).max(0o7777);

const createSchema = z.object({
  parent_id: z.string(),
  name: z.unknown(),
  kind: z.enum(['file', 'dir', 'link']),
  mtime: mtimeSchema.optional(),
  mode: modeSchema.optional(),
  target: z.unknown().optional(),
});

const updateSchema = z
  .object({
    parent_id: z.string().optional(),
    name: z.unknown().optional(),
    replace: z.boolean().optional(),
    mtime: mtimeSchema.optional(),
    mode: modeSchema.optional(),
  })
  .refine((b) => b.parent_id !== undefined || b.name !== undefined || b.mtime !== undefined || b.mode !== undefined, {
    message: 'nothing to change: give parent_id, name, mtime or mode',
  });

const restoreSchema = z.object({ parent_id: z.string().optional(), name: z.unknown().optional() });

export async function getRoot(backend: Backend, actor: Actor): Promise<NodeInfo> {
  const view = await viewOf(backend.db, actor);
  return infoFor(view, await visibleIn(backend.db, view, view.rootId));
}

export async function getNode(backend: Backend, actor: Actor, id: string): Promise<NodeInfo> {
  const view = await viewOf(backend.db, actor);
  return infoFor(view, await visibleIn(backend.db, view, id));
}

type ChildrenQuery = { after?: unknown; limit?: unknown };

/** Live children of a folder ordered by name, a page at a time (keyset on name: stable under concurrent inserts). */
export async function listChildren(backend: Backend, actor: Actor, id: string, query: ChildrenQuery): Promise<ChildrenPage> {
  return childrenPage(backend, await childrenRequest(backend, actor, id, query));
}

async function childrenPage(backend: Backend, { view, dir, limit, after }: ChildrenRequest): Promise<ChildrenPage> {
  const q = backend.db('nodes').where({ parent_id: dir.id }).whereNull('deleted_at').orderBy('name').limit(limit + 1);
  if (after !== undefined) q.andWhere('name', '>', after);
  const rows: Array<Record<string, unknown>> = await q;
  const nodes = rows.map((r) => nodeRow(r)).filter((n) => roleOn(view, n));
  // Shares with the caller that show in this folder, merged in name order.
  const mounted = await mountsIn(backend.db, view, dir.id, after);
  const all = [...nodes.map((n) => infoFor(view, n)), ...mounted].sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
  const children = all.slice(0, limit);
  return { children, next: all.length > limit ? (children.at(-1)?.name ?? null) : null };
}

/** The caller's entries of shares placed in this folder of theirs (after `after` in name order), as they see them. */
async function mountsIn(db: Knex, view: View, dirId: string, after?: string): Promise<NodeInfo[]> {
  const roots = [...view.mounts].filter(([, m]) => m.parent_id === dirId && (after === undefined || Buffer.compare(Buffer.from(m.name), Buffer.from(after)) > 0)).map(([rootId]) => rootId);
  if (roots.length === 0) return [];
  const rows: Array<Record<string, unknown>> = await db('nodes').whereIn('id', roots).whereNull('deleted_at');
  return rows.map((r) => infoFor(view, nodeRow(r)));
}

interface ChildrenRequest {
  view: View;
  dir: NodeRow;
  limit: number;
  after: string | undefined;
}

async function childrenRequest(backend: Backend, actor: Actor, id: string, query: ChildrenQuery): Promise<ChildrenRequest> {
  const view = await viewOf(backend.db, actor);
  const dir = await visibleIn(backend.db, view, id);
  if (dir.kind !== 'dir') throw new ApiError('not_a_directory', `"${dir.name}" is not a folder`);
  const limit = pageLimit(query.limit, backend.settings.limits.max_page_size);
  if (query.after !== undefined && typeof query.after !== 'string') throw new ApiError('bad_request', 'after must be given once');
  return { view, dir, limit, after: query.after !== undefined && query.after !== '' ? query.after : undefined };
}

/**
 * The same page as `listChildren`, as the JSON text of the response. On SQLite the database
 * writes that JSON itself: node-sqlite3 builds a JS object per row and per column, which made a
 * page of 5000 children cost ~45 ms in row conversion alone (then nodeInfo and JSON.stringify);
 * the page as one JSON value from SQLite, sent as is, costs about half of the whole.
 * Each object has exactly the fields, order and values of `nodeInfo` (kind normalized as in
 * `nodeRow`, `created_at` as toISOString's UTC millisecond form for the server-clock timestamps it
 * holds, `deleted_at` null: the page holds live nodes only; a link's `target`, then the caller's
 * role — one for the whole folder: namespaces do not nest inside it — patched in last).
 * One statement, so the page and its `next` come from one snapshot. Needs SQLite ≥ 3.44 (ORDER BY inside an aggregate; node-sqlite3
 * bundles a newer one).
 */
export async function listChildrenJson(backend: Backend, actor: Actor, id: string, query: ChildrenQuery): Promise<string> {
  const db = backend.db;
  const request = await childrenRequest(backend, actor, id, query);
  const { view, dir, limit, after } = request;
  // Shares placed in this folder are merged in by the general path.
  if (dbClient(db) !== 'sqlite3' || [...view.mounts.values()].some((m) => m.parent_id === dir.id)) return JSON.stringify(await childrenPage(backend, request));
  const role = roleOn(view, dir) ?? 'viewer';
  const rows: Array<{ children: string; next: string | null }> = await db.raw(
    `WITH page AS MATERIALIZED (
       SELECT id, parent_id, name, kind, head_version, size, mtime, mode, created_at, target FROM nodes
       WHERE parent_id = ? AND deleted_at IS NULL AND name > ? ORDER BY name LIMIT ?
     ), last AS MATERIALIZED (SELECT max(name) AS name FROM page)
     SELECT
       (SELECT json_group_array(json_patch(json_object(
          'id', id, 'parent_id', parent_id, 'name', name, 'kind', CASE kind WHEN 'dir' THEN 'dir' WHEN 'link' THEN 'link' ELSE 'file' END,
          'head_version', head_version, 'size', size, 'mtime', mtime, 'mode', mode, 'deleted_at', NULL,
          'created_at', strftime('%Y-%m-%dT%H:%M:%S', created_at / 1000, 'unixepoch') || printf('.%03dZ', created_at % 1000)
        ), CASE kind WHEN 'link' THEN json_object('target', target, 'role', ?) ELSE json_object('role', ?) END) ORDER BY name) FROM page) AS children,
       (SELECT name FROM last WHERE EXISTS (
          SELECT 1 FROM nodes WHERE parent_id = ? AND deleted_at IS NULL AND name > last.name
        )) AS next`,
    [dir.id, after ?? '', limit, role, role, dir.id],
  );
  const row = rows[0]!;
  return `{"children":${row.children},"next":${JSON.stringify(row.next)}}`;
}


/** A live folder the caller may add to (editor or owner). */
export async function targetDir(db: Knex, view: View, id: unknown): Promise<NodeRow> {
  const dir = await visibleIn(db, view, id, 'parent_id');
  if (dir.kind !== 'dir') throw new ApiError('not_a_directory', `"${dir.name}" is not a folder`);
  assertMayWrite(view, dir);
  await assertLive(db, dir);
  return dir;
}

/** What holds `name` in the folder for this caller: a live node, or the caller's entry of a share. */
export async function liveChild(db: Knex, view: View, parentId: string, name: string): Promise<NodeRow | null> {
  const row = await db('nodes').where({ parent_id: parentId, name }).whereNull('deleted_at').first();
  if (row) return nodeRow(row);
  for (const [rootId, m] of view.mounts) {
    if (m.parent_id !== parentId || m.name !== name) continue;
    const root = await db('nodes').where({ id: rootId }).first();
    if (root) return nodeRow(root);
  }
  return null;
}

export function exists(name: string, existing: NodeRow): ApiError {
  return new ApiError('exists', `"${name}" already exists in this folder`, { node_id: existing.id, kind: existing.kind });
}

/**
 * Puts `node` under `parent`: when that is another namespace, the node's subtree moves into it
 * (locked in a fixed order, journaled as leaving in the old one — whoever cannot see the new one
 * sees it gone). A namespace root moves only within its owner's own tree, and nothing holding
 * one enters another namespace: namespaces do not nest (409).
 */
async function placeNode(trx: Knex.Transaction, node: NodeRow, parent: NodeRow, who: { userId: number; deviceId: number }): Promise<NodeRow> {
  const own = await namespaceRootedAt(trx, node.id);
  if (own) {
    const parentNs = await trx('namespaces').where({ id: parent.ns_id }).first('owner_id', 'root_node_id');
    const intoOwnersRoot = parentNs && Number(parentNs.owner_id) === own.owner_id && (await trx('nodes').where({ id: parentNs.root_node_id }).first('parent_id'))?.parent_id === null;
    if (!intoOwnersRoot) throw new ApiError('nested_share', `"${node.name}" is shared: it can move only within its owner's own folders`);
    return node;
  }
  if (parent.ns_id === node.ns_id) return node;
  await assertNoNamespaceBelow(trx, node, 'it cannot move into another shared folder');
  await lockNamespaces(trx, [node.ns_id, parent.ns_id]);
  // Its state in the namespace it leaves: no longer in it (where it went is not that namespace's to keep).
  await journal(trx, { ...who, action: 'node.leave', node: { ...node, parent_id: null }, ns: node.ns_id });
  await rehome(trx, node, parent.ns_id, parent.owner_id);
  return { ...node, ns_id: parent.ns_id, owner_id: parent.owner_id };
}

/** What a new node of this kind holds besides its name: a link its target (and the fixed link mode), a file or folder its mode. */
function contentOf(req: z.infer<typeof createSchema>): Pick<NodeRow, 'mode' | 'size' | 'target'> {
  if (req.kind !== 'link') {
    if (req.target !== undefined) throw new ApiError('bad_request', 'only a link has a target');
    return { mode: req.mode ?? (req.kind === 'dir' ? 0o755 : 0o644), size: 0, target: null };
  }
  if (req.mode !== undefined) throw new ApiError('bad_request', 'a link has no mode of its own (it is always 0777)');
  assertValidTarget(req.target);
  // Stored exactly as written and never resolved: it may point anywhere, or nowhere.
  return { mode: LINK_MODE, size: Buffer.byteLength(req.target, 'utf8'), target: req.target };
}

/** A create request, checked as far as it can be without the database. */
export interface CreatePlan {
  parentId: string;
  name: string;
  kind: NodeRow['kind'];
  mtime?: number;
  content: Pick<NodeRow, 'mode' | 'size' | 'target'>;
}

export function planCreate(body: unknown): CreatePlan {
  const req = parseBody(createSchema, body);
  assertValidName(req.name);
  return { parentId: req.parent_id, name: req.name, kind: req.kind, mtime: req.mtime, content: contentOf(req) };
}

/** The row of a new node in `parent` (checked: a live folder the caller may write, without that name). */
export function newNodeRow(plan: CreatePlan, parent: NodeRow, now: number): NodeRow {
  // What is made in a namespace belongs to its owner (an editor's files in a shared folder are the owner's).
  return {
    id: newNodeId(),
    owner_id: parent.owner_id,
    ns_id: parent.ns_id,
    parent_id: parent.id,
    name: plan.name,
    kind: plan.kind,
    head_version: 0,
    mtime: plan.mtime ?? now,
    ...plan.content,
    deleted_at: null,
    created_at: now,
  };
}

/** What the journal keeps of a create. */
export function createEntry(actor: Actor, node: NodeRow): JournalEntry {
  return { userId: actor.userId, deviceId: actor.deviceId, action: 'node.create', node, detail: { kind: node.kind, name: node.name } };
}

export async function createNode(backend: Backend, actor: Actor, body: unknown): Promise<NodeInfo> {
  const plan = planCreate(body);
  try {
    return await mutate(backend.db, async (trx) => {
      await lockNamespacesOf(trx, [plan.parentId]);
      const view = await viewOf(trx, actor);
      const parent = await targetDir(trx, view, plan.parentId);
      const existing = await liveChild(trx, view, parent.id, plan.name);
      if (existing) throw exists(plan.name, existing);
      const node = newNodeRow(plan, parent, Date.now());
      await trx('nodes').insert(node);
      await journal(trx, createEntry(actor, node));
      return infoFor(view, node);
    });
  } catch (err) {
    // Two creates of one name raced past the check: the unique index decided.
    if (isUniqueViolation(err)) throw new ApiError('exists', `"${plan.name}" already exists in this folder`);
    throw err;
  }
}

/**
 * Rename, move, and attribute changes, atomically. With `replace`, an existing node at the
 * destination gives way: a file over a file becomes a new version of the destination file (its
 * history is kept: the editor pattern "write temp, rename over"), the moved file goes to the
 * trash, and the destination node is returned. Any other replace moves the source into the place
 * of the destination, which goes to the trash (and can be restored from there): a link over a
 * file or a link, a file over a link, a folder over an empty folder. A folder replaces only a
 * folder, and only a folder replaces a folder (rename(2)'s ENOTDIR and EISDIR).
 */
export async function updateNode(backend: Backend, actor: Actor, id: string, body: unknown): Promise<NodeInfo> {
  const req = parseBody(updateSchema, body);
  if (req.name !== undefined) assertValidName(req.name);
  const newName = req.name as string | undefined;
  try {
    return await mutate(backend.db, async (trx) => {
      await lockNamespacesOf(trx, [id, req.parent_id]);
      const view = await viewOf(trx, actor);
      const node = await visibleIn(trx, view, id);
      await assertLive(trx, node);
      if (node.kind === 'link' && req.mode !== undefined) throw new ApiError('bad_request', 'a link has no mode of its own (it is always 0777)');
      const moving = req.parent_id !== undefined || newName !== undefined;
      if (moving && mountOf(view, node)) return moveEntry(trx, view, actor, node, req.parent_id, newName);
      assertMayWrite(view, node);
      if (moving && node.parent_id === null) throw new ApiError('invalid_move', 'the root folder cannot be renamed or moved');
      const parent = req.parent_id !== undefined ? await targetDir(trx, view, req.parent_id) : null;
      const parentId = parent?.id ?? node.parent_id;
      const name = newName ?? node.name;
      if (parent && (await lineage(trx, parent.id)).some((a) => a.id === node.id)) {
        throw new ApiError('invalid_move', `cannot move "${node.name}" into itself`);
      }
      const now = Date.now();
      const who = { userId: actor.userId, deviceId: actor.deviceId };
      const attrs = { ...(req.mtime !== undefined && { mtime: req.mtime }), ...(req.mode !== undefined && { mode: req.mode }) };
      const target = moving && parentId ? await liveChild(trx, view, parentId, name) : null;
      if (target && target.id !== node.id) {
        if (!req.replace || mountOf(view, target)) throw exists(name, target);
        assertMayWrite(view, target);
        return infoFor(view, await replaceNode(trx, view, actor, node, target, attrs, now));
      }
      const placed = parent ? await placeNode(trx, node, parent, who) : node;
      const updated: NodeRow = { ...placed, parent_id: parentId, name, ...attrs };
      await trx('nodes').where({ id: node.id }).update({ parent_id: parentId, name, ...attrs });
      const action = moving ? (parentId !== node.parent_id ? 'node.move' : 'node.rename') : 'node.attrs';
      await journal(trx, {
        ...who,
        action,
        node: updated,
        detail: { from: { parent_id: node.parent_id, name: node.name }, to: { parent_id: parentId, name }, ...attrs },
      });
      return infoFor(view, updated);
    });
  } catch (err) {
    if (isUniqueViolation(err)) throw new ApiError('exists', `"${newName ?? ''}" already exists in this folder`);
    throw err;
  }
}

/**
 * A grantee renames or moves their entry of a share: only where it shows in their own tree (any
 * role may; the owner's folder keeps its name). Journaled in the grantee's root namespace, so
 * every device of theirs follows.
 */
async function moveEntry(trx: Knex.Transaction, view: View, actor: Actor, node: NodeRow, parentId: string | undefined, newName: string | undefined): Promise<NodeInfo> {
  const mount = mountOf(view, node)!;
  const parent = await visibleIn(trx, view, parentId ?? mount.parent_id, 'parent_id');
  if (parent.kind !== 'dir' || parent.owner_id !== view.userId || roleOn(view, parent) !== 'owner') {
    throw new ApiError('forbidden', `"${mount.name}" is shared with you: it can move only within your own folders`);
  }
  await assertLive(trx, parent);
  const name = newName ?? mount.name;
  const target = await liveChild(trx, view, parent.id, name);
  if (target && target.id !== node.id) throw exists(name, target);
  await trx('shares').where({ id: mount.shareId }).update({ mount_parent_id: parent.id, mount_name: name });
  view.mounts.set(node.id, { ...mount, parent_id: parent.id, name });
  await journal(trx, {
    userId: actor.userId,
    deviceId: actor.deviceId,
    action: 'share.entry',
    node: { ...node, parent_id: parent.id, name },
    ns: view.rootNs,
    detail: { from: { parent_id: mount.parent_id, name: mount.name }, to: { parent_id: parent.id, name } },
  });
  return infoFor(view, node);
}

async function replaceNode(trx: Knex.Transaction, view: View, actor: Actor, source: NodeRow, dest: NodeRow, attrs: { mtime?: number; mode?: number }, now: number): Promise<NodeRow> {
  const who = { userId: actor.userId, deviceId: actor.deviceId };
  if (source.kind === 'file' && dest.kind === 'file') {
    // The destination keeps its id and history and gains the source's content as a new version.
    const { node: replaced } = await appendVersion(trx, actor, dest, {
      base_version: dest.head_version,
      size: source.size,
      mtime: attrs.mtime ?? source.mtime,
      ...(await storedManifest(trx, source.id, source.head_version)),
    }, 'node.replace');
    const mode = attrs.mode ?? source.mode;
    await trx('nodes').where({ id: dest.id }).update({ mode });
    await trx('nodes').where({ id: source.id }).update({ deleted_at: now, deleted_by: actor.deviceId });
    await journal(trx, { ...who, action: 'node.delete', node: { ...source, deleted_at: now }, detail: { replaced_into: dest.id } });
    return { ...replaced, mode };
  }
  if (source.kind === 'dir' && dest.kind !== 'dir') {
    throw new ApiError('not_a_directory', `"${dest.name}" is not a folder; a folder cannot replace it`);
  }
  if (source.kind !== 'dir' && dest.kind === 'dir') {
    throw new ApiError('is_a_directory', `"${dest.name}" is a folder; a ${source.kind} cannot replace it`);
  }
  if (dest.kind === 'dir') {
    const child = await trx('nodes').where({ parent_id: dest.id }).whereNull('deleted_at').first();
    if (child) throw new ApiError('not_empty', `"${dest.name}" is not empty`);
  }
  // The destination goes to the trash; the source takes its place and keeps its own id.
  const into = dest.parent_id === null ? source : await placeNode(trx, source, await visibleIn(trx, view, dest.parent_id), who);
  await trx('nodes').where({ id: dest.id }).update({ deleted_at: now, deleted_by: actor.deviceId });
  await journal(trx, { ...who, action: 'node.delete', node: { ...dest, deleted_at: now }, detail: { replaced_by: source.id } });
  const moved: NodeRow = { ...into, parent_id: dest.parent_id, name: dest.name, ...attrs };
  await trx('nodes').where({ id: source.id }).update({ parent_id: moved.parent_id, name: moved.name, ...attrs });
  await journal(trx, { ...who, action: 'node.move', node: moved, detail: { replaced: dest.id } });
  return moved;
}

/**
 * Moves a node (and with it everything under it) to the trash. `if_version` (a file's head version
 * the caller saw) makes it conditional: an edit committed meanwhile elsewhere wins over the delete
 * (409 stale_version with the head), so a device never deletes a version it has not seen;
 * `if_empty=true` (rmdir) refuses a folder with live children (409 not_empty).
 */
export async function deleteNode(backend: Backend, actor: Actor, id: string, query: { if_version?: unknown; if_empty?: unknown } = {}): Promise<NodeInfo> {
  const ifVersion = query.if_version === undefined ? undefined : parseWhole(query.if_version, 'if_version');
  if (query.if_empty !== undefined && query.if_empty !== 'true') throw new ApiError('bad_request', 'if_empty must be "true"');
  const ifEmpty = query.if_empty === 'true';
  return mutate(backend.db, async (trx) => {
    await lockNamespacesOf(trx, [id]);
    const view = await viewOf(trx, actor);
    const node = await visibleIn(trx, view, id);
    const mount = mountOf(view, node);
    if (mount) return leaveShare(trx, view, actor, node, mount.shareId);
    assertMayWrite(view, node);
    if (node.parent_id === null) throw new ApiError('invalid_move', 'the root folder cannot be deleted');
    if (node.deleted_at !== null) return infoFor(view, node);
    if (ifVersion !== undefined && node.head_version !== ifVersion) {
      throw new ApiError('stale_version', `"${node.name}" changed since version ${ifVersion}`, { head_version: node.head_version });
    }
    // rmdir: a folder someone added to meanwhile is not deleted with what the caller never saw.
    if (ifEmpty && (await trx('nodes').where({ parent_id: node.id }).whereNull('deleted_at').first('id'))) {
      throw new ApiError('not_empty', `"${node.name}" is not empty`);
    }
    const deleted: NodeRow = { ...node, deleted_at: Date.now() };
    await trx('nodes').where({ id: node.id }).update({ deleted_at: deleted.deleted_at, deleted_by: actor.deviceId });
    if (node.kind === 'dir') await foldIntoItem(trx, node.id, actor.deviceId, deleted.deleted_at! - backend.settings.history.fold_window_ms);
    await journal(trx, { userId: actor.userId, deviceId: actor.deviceId, action: 'node.delete', node: deleted });
    return infoFor(view, deleted);
  });
}

/** A grantee removes their entry of a share: the share ends for them; the owner's files are untouched. */
async function leaveShare(trx: Knex.Transaction, view: View, actor: Actor, node: NodeRow, shareId: number): Promise<NodeInfo> {
  const info = { ...infoFor(view, node), deleted_at: new Date().toISOString() };
  await trx('shares').where({ id: shareId }).delete();
  const entry = view.mounts.get(node.id)!;
  await journal(trx, {
    userId: actor.userId,
    deviceId: actor.deviceId,
    action: 'share.leave',
    node: { ...node, parent_id: entry.parent_id, name: entry.name, deleted_at: Date.now() },
    ns: view.rootNs,
  });
  return info;
}

/**
 * Brings a trash item back — a folder with its whole subtree as it was, including what went with
 * it (`trashed_with`; an item trashed on its own earlier stays in the trash) — where it was, or to
 * {parent_id, name}. Where it was is in the trash too: into the nearest live folder above it.
 * Its name taken there meanwhile (and no name asked for): under "NAME (restored N).EXT".
 */
export async function restoreNode(backend: Backend, actor: Actor, id: string, body: unknown): Promise<NodeInfo> {
  const req = parseBody(restoreSchema, body ?? {});
  if (req.name !== undefined) assertValidName(req.name);
  try {
    return await mutate(backend.db, async (trx) => {
      await lockNamespacesOf(trx, [id, req.parent_id]);
      const view = await viewOf(trx, actor);
      const node = await visibleIn(trx, view, id);
      assertMayWrite(view, node);
      if (node.deleted_at === null) throw new ApiError('bad_request', `"${node.name}" is not in the trash`);
      const parent = await targetDir(trx, view, req.parent_id ?? (await nearestLiveFolder(trx, node)));
      const name = req.name !== undefined ? (req.name as string) : await freeRestoreName(trx, view, parent.id, node.name);
      const existing = await liveChild(trx, view, parent.id, name);
      if (existing) throw exists(name, existing);
      const who = { userId: actor.userId, deviceId: actor.deviceId };
      const placed = await placeNode(trx, node, parent, who);
      const restored: NodeRow = { ...placed, parent_id: parent.id, name, deleted_at: null };
      await trx('nodes').where({ id: node.id }).update({ parent_id: parent.id, name, deleted_at: null, deleted_by: null, trashed_with: null });
      await journal(trx, { ...who, action: 'node.restore', node: restored });
      // What went to the trash with it comes back with it (each journaled: devices show it again).
      const carried: Array<Record<string, unknown>> = await trx('nodes').where({ trashed_with: node.id }).whereNull('purged_at');
      for (const row of carried) {
        const back: NodeRow = { ...nodeRow(row), ns_id: restored.ns_id, owner_id: restored.owner_id, deleted_at: null };
        await trx('nodes').where({ id: back.id }).update({ deleted_at: null, deleted_by: null, trashed_with: null });
        await journal(trx, { ...who, action: 'node.restore', node: back });
      }
      return infoFor(view, restored);
    });
  } catch (err) {
    if (isUniqueViolation(err)) throw new ApiError('exists', 'a node of that name already exists in this folder');
    throw err;
  }
}

/** The folder a trashed node was in, or — that one in the trash too — the nearest live folder above it. */
async function nearestLiveFolder(trx: Knex.Transaction, node: NodeRow): Promise<string | null> {
  const chain = (await lineage(trx, node.id)).slice(1);
  // From the root down, the last folder before the first one in the trash.
  let live: string | null = null;
  for (const n of chain.reverse()) {
    if (n.deleted_at !== null) break;
    live = n.id;
  }
  return live;
}

/** `name`, or the first of "NAME (restored).EXT", "NAME (restored 2).EXT"… free in the folder. */
async function freeRestoreName(trx: Knex.Transaction, view: View, parentId: string, name: string): Promise<string> {
  const dot = name.lastIndexOf('.');
  const [stem, ext] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ''];
  for (let n = 1; ; n++) {
    const candidate = n === 1 ? name : `${stem} (restored${n === 2 ? '' : ` ${n - 1}`})${ext}`;
    if (!(await liveChild(trx, view, parentId, candidate))) return candidate;
  }
}

/**
 * A folder just deleted by `deviceId`: what that device deleted under it since `since` (rm -r
 * deletes the files first, the folder last) — and what had gone with its sub-folders — goes with
 * it as one trash item. An item trashed on its own before that stays an item of its own.
 */
async function foldIntoItem(trx: Knex.Transaction, folderId: string, deviceId: number, since: number): Promise<void> {
  await trx.raw(
    `WITH RECURSIVE sub(id) AS (
       SELECT id FROM nodes WHERE parent_id = ?
       UNION ALL SELECT n.id FROM nodes n JOIN sub s ON n.parent_id = s.id
     )
     UPDATE nodes SET trashed_with = ?
     WHERE id IN (SELECT id FROM sub) AND deleted_at IS NOT NULL AND purged_at IS NULL
       AND ((trashed_with IS NULL AND deleted_by = ? AND deleted_at >= ?) OR trashed_with IN (SELECT id FROM sub))`,
    [folderId, folderId, deviceId, since],
  );
}
