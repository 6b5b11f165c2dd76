import type { Knex } from 'knex';
import { z } from 'zod';
import { ApiError } from '../../protocol/errors.js';
import { LINK_MODE, assertValidTarget } from '../../protocol/link-target.js';
import { assertValidName } from '../../protocol/names.js';
import type { ChildrenPage, NodeInfo } from '../../protocol/types.js';
import { dbClient } from '../db/connect.js';
import { isUniqueViolation } from '../db/errors.js';
import { nodeInfo, nodeRow, type NodeRow } from '../db/rows.js';
import { assertLive, lineage, notFound, visibleNode } from './access.js';
import type { Actor, Backend } from './context.js';
import { newNodeId } from './ids.js';
import { pageLimit, parseWhole } from './params.js';
import { journal, mutate } from './journal.js';
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
  const row = await backend.db('nodes').where({ owner_id: actor.userId }).whereNull('parent_id').first();
  if (!row) throw notFound();
  return nodeInfo(nodeRow(row));
}

export async function getNode(backend: Backend, actor: Actor, id: string): Promise<NodeInfo> {
  return nodeInfo(await visibleNode(backend.db, actor, id));
}

type ChildrenQuery = { after?: unknown; limit?: unknown };

/** Live children of a folder ordered by name, a page at a time (keyset on name: stable under concurrent inserts). */
export async function listChildren(backend: Backend, actor: Actor, id: string, query: ChildrenQuery): Promise<ChildrenPage> {
  const { dir, limit, after } = await childrenRequest(backend, actor, id, query);
  const q = backend.db('nodes').where({ parent_id: dir.id }).whereNull('deleted_at').orderBy('name').limit(limit + 1);
  if (after !== undefined) q.andWhere('name', '>', after);
  const rows: Array<Record<string, unknown>> = await q;
  const children = rows.slice(0, limit).map((r) => nodeInfo(nodeRow(r)));
  return { children, next: rows.length > limit ? (children.at(-1)?.name ?? null) : null };
}

async function childrenRequest(backend: Backend, actor: Actor, id: string, query: ChildrenQuery): Promise<{ dir: NodeRow; limit: number; after: string | undefined }> {
  const dir = await visibleNode(backend.db, actor, id);
  if (dir.kind !== 'dir') throw new ApiError('not_a_directory', `"${dir.name}" is not a folder`);
  const limit = pageLimit(query.limit, backend.settings.limits.max_page_size);
  if (query.after !== undefined && typeof query.after !== 'string') throw new ApiError('bad_request', 'after must be given once');
  return { dir, limit, after: query.after !== undefined && query.after !== '' ? query.after : undefined };
}

/**
 * The same page as `listChildren`, as the JSON text of the response. On SQLite the database
 * writes that JSON itself: node-sqlite3 builds a JS object per row and per column, which made a
 * page of 5000 children cost ~45 ms in row conversion alone (then nodeInfo and JSON.stringify);
 * the page as one JSON value from SQLite, sent as is, costs about half of the whole.
 * Each object has exactly the fields, order and values of `nodeInfo` (kind normalized as in
 * `nodeRow`, `created_at` as toISOString's UTC millisecond form for the server-clock timestamps it
 * holds, `deleted_at` null: the page holds live nodes only; a link's `target` patched in last).
 * One statement, so the page and its `next` come from one snapshot. Needs SQLite ≥ 3.44 (ORDER BY inside an aggregate; node-sqlite3
 * bundles a newer one).
 */
export async function listChildrenJson(backend: Backend, actor: Actor, id: string, query: ChildrenQuery): Promise<string> {
  const db = backend.db;
  if (dbClient(db) !== 'sqlite3') return JSON.stringify(await listChildren(backend, actor, id, query));
  const { dir, limit, after } = await childrenRequest(backend, actor, id, query);
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
        ), CASE kind WHEN 'link' THEN json_object('target', target) ELSE '{}' END) ORDER BY name) FROM page) AS children,
       (SELECT name FROM last WHERE EXISTS (
          SELECT 1 FROM nodes WHERE parent_id = ? AND deleted_at IS NULL AND name > last.name
        )) AS next`,
    [dir.id, after ?? '', limit, dir.id],
  );
  const row = rows[0]!;
  return `{"children":${row.children},"next":${JSON.stringify(row.next)}}`;
}


/** A live folder of the actor's that new children may go into. */
async function targetDir(db: Knex, actor: Actor, id: unknown): Promise<NodeRow> {
  const dir = await visibleNode(db, actor, id, 'parent_id');
  if (dir.kind !== 'dir') throw new ApiError('not_a_directory', `"${dir.name}" is not a folder`);
  await assertLive(db, dir);
  return dir;
}

async function liveChild(db: Knex, parentId: string, name: string): Promise<NodeRow | null> {
  const row = await db('nodes').where({ parent_id: parentId, name }).whereNull('deleted_at').first();
  return row ? nodeRow(row) : null;
}

function exists(name: string, existing: NodeRow): ApiError {
  return new ApiError('exists', `"${name}" already exists in this folder`, { node_id: existing.id, kind: existing.kind });
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

export async function createNode(backend: Backend, actor: Actor, body: unknown): Promise<NodeInfo> {
  const req = parseBody(createSchema, body);
  assertValidName(req.name);
  const name = req.name;
  const content = contentOf(req);
  try {
    return await mutate(backend.db, async (trx) => {
      const parent = await targetDir(trx, actor, req.parent_id);
      const existing = await liveChild(trx, parent.id, name);
      if (existing) throw exists(name, existing);
      const now = Date.now();
      const node: NodeRow = {
        id: newNodeId(),
        owner_id: actor.userId,
        parent_id: parent.id,
        name,
        kind: req.kind,
        head_version: 0,
        mtime: req.mtime ?? now,
        ...content,
        deleted_at: null,
        created_at: now,
      };
      await trx('nodes').insert(node);
      await journal(trx, { userId: actor.userId, deviceId: actor.deviceId, action: 'node.create', node, detail: { kind: node.kind, name } });
      return nodeInfo(node);
    });
  } catch (err) {
    // Two creates of one name raced past the check: the unique index decided.
    if (isUniqueViolation(err)) throw new ApiError('exists', `"${name}" already exists in this folder`);
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
      const node = await visibleNode(trx, actor, id);
      await assertLive(trx, node);
      if (node.kind === 'link' && req.mode !== undefined) throw new ApiError('bad_request', 'a link has no mode of its own (it is always 0777)');
      const moving = req.parent_id !== undefined || newName !== undefined;
      if (moving && node.parent_id === null) throw new ApiError('invalid_move', 'the root folder cannot be renamed or moved');
      const parent = req.parent_id !== undefined ? await targetDir(trx, actor, req.parent_id) : null;
      const parentId = parent?.id ?? node.parent_id;
      const name = newName ?? node.name;
      if (parent && (await lineage(trx, parent.id)).some((a) => a.id === node.id)) {
        throw new ApiError('invalid_move', `cannot move "${node.name}" into itself`);
      }
      const now = Date.now();
      const attrs = { ...(req.mtime !== undefined && { mtime: req.mtime }), ...(req.mode !== undefined && { mode: req.mode }) };
      const target = moving && parentId ? await liveChild(trx, parentId, name) : null;
      if (target && target.id !== node.id) {
        if (!req.replace) throw exists(name, target);
        return nodeInfo(await replaceNode(trx, actor, node, target, attrs, now));
      }
      const updated: NodeRow = { ...node, parent_id: parentId, name, ...attrs };
      await trx('nodes').where({ id: node.id }).update({ parent_id: parentId, name, ...attrs });
      const action = moving ? (parentId !== node.parent_id ? 'node.move' : 'node.rename') : 'node.attrs';
      await journal(trx, {
        userId: actor.userId,
        deviceId: actor.deviceId,
        action,
        node: updated,
        detail: { from: { parent_id: node.parent_id, name: node.name }, to: { parent_id: parentId, name }, ...attrs },
      });
      return nodeInfo(updated);
    });
  } catch (err) {
    if (isUniqueViolation(err)) throw new ApiError('exists', `"${newName ?? ''}" already exists in this folder`);
    throw err;
  }
}

async function replaceNode(trx: Knex.Transaction, actor: Actor, source: NodeRow, dest: NodeRow, attrs: { mtime?: number; mode?: number }, now: number): Promise<NodeRow> {
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
    await trx('nodes').where({ id: source.id }).update({ deleted_at: now });
    await journal(trx, { ...who, action: 'node.delete', node: source, detail: { replaced_into: dest.id } });
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
  await trx('nodes').where({ id: dest.id }).update({ deleted_at: now });
  await journal(trx, { ...who, action: 'node.delete', node: dest, detail: { replaced_by: source.id } });
  const moved: NodeRow = { ...source, parent_id: dest.parent_id, name: dest.name, ...attrs };
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
    const node = await visibleNode(trx, actor, id);
    if (node.parent_id === null) throw new ApiError('invalid_move', 'the root folder cannot be deleted');
    if (node.deleted_at !== null) return nodeInfo(node);
    if (ifVersion !== undefined && node.head_version !== ifVersion) {
      throw new ApiError('stale_version', `"${node.name}" changed since version ${ifVersion}`, { head_version: node.head_version });
    }
    // rmdir: a folder someone added to meanwhile is not deleted with what the caller never saw.
    if (ifEmpty && (await trx('nodes').where({ parent_id: node.id }).whereNull('deleted_at').first('id'))) {
      throw new ApiError('not_empty', `"${node.name}" is not empty`);
    }
    const deleted: NodeRow = { ...node, deleted_at: Date.now() };
    await trx('nodes').where({ id: node.id }).update({ deleted_at: deleted.deleted_at });
    await journal(trx, { userId: actor.userId, deviceId: actor.deviceId, action: 'node.delete', node: deleted });
    return nodeInfo(deleted);
  });
}

/** Brings a node back from the trash, where it was or to {parent_id, name}. */
export async function restoreNode(backend: Backend, actor: Actor, id: string, body: unknown): Promise<NodeInfo> {
  const req = parseBody(restoreSchema, body ?? {});
  if (req.name !== undefined) assertValidName(req.name);
  try {
    return await mutate(backend.db, async (trx) => {
      const node = await visibleNode(trx, actor, id);
      if (node.deleted_at === null) throw new ApiError('bad_request', `"${node.name}" is not in the trash`);
      const parent = await targetDir(trx, actor, req.parent_id ?? node.parent_id);
      const name = (req.name as string | undefined) ?? node.name;
      const existing = await liveChild(trx, parent.id, name);
      if (existing) throw exists(name, existing);
      const restored: NodeRow = { ...node, parent_id: parent.id, name, deleted_at: null };
      await trx('nodes').where({ id: node.id }).update({ parent_id: parent.id, name, deleted_at: null });
      await journal(trx, { userId: actor.userId, deviceId: actor.deviceId, action: 'node.restore', node: restored });
      return nodeInfo(restored);
    });
  } catch (err) {
    if (isUniqueViolation(err)) throw new ApiError('exists', 'a node of that name already exists in this folder');
    throw err;
  }
}
