import type { Knex } from 'knex';
import { ApiError } from '../../protocol/errors.js';
import type { TrashItem, TrashPage } from '../../protocol/types.js';
import { iso, nodeRow, num, type NodeRow } from '../db/rows.js';
import { purgeItems } from '../jobs/purge.js';
import { mountOf, viewOf, type View } from './access.js';
import type { Actor, Backend } from './context.js';
import { pageLimit } from './params.js';

/**
 * GET /v1/trash — what the caller can restore (editor or owner of its namespace), newest first:
 * items deleted on their own (a folder with what went with it), with where each was, its size and
 * file count, when and by which device. Paged by an opaque `after`.
 */
export async function listTrash(backend: Backend, actor: Actor, query: { after?: unknown; limit?: unknown }): Promise<TrashPage> {
  const db = backend.db;
  const view = await viewOf(db, actor);
  const limit = pageLimit(query.limit, Math.min(1000, backend.settings.limits.max_page_size));
  const writable = [...view.roles].filter(([, role]) => role !== 'viewer').map(([ns]) => ns);
  const q = db('nodes as n')
    .leftJoin('devices as d', 'd.id', 'n.deleted_by')
    .whereIn('n.ns_id', writable)
    .whereNotNull('n.deleted_at')
    .whereNull('n.purged_at')
    .whereNull('n.trashed_with')
    .orderBy([{ column: 'n.deleted_at', order: 'desc' }, { column: 'n.id', order: 'asc' }])
    .limit(limit + 1)
    .select('n.*', 'd.name as device_name');
  if (query.after !== undefined) {
    const [at, id] = parseAfter(query.after);
    q.andWhere((w) => w.where('n.deleted_at', '<', at).orWhere((x) => x.where('n.deleted_at', '=', at).andWhere('n.id', '>', id)));
  }
  const rows: Array<Record<string, unknown>> = await q;
  const items: TrashItem[] = [];
  for (const row of rows.slice(0, limit)) {
    const node = nodeRow(row);
    const { size, files } = await itemSize(db, node);
    items.push({
      id: node.id,
      name: node.name,
      kind: node.kind,
      path: await pathOf(db, view, node),
      parent_id: node.parent_id,
      size,
      files,
      deleted_at: iso(node.deleted_at),
      deleted_by: row.device_name === null || row.device_name === undefined ? null : String(row.device_name),
    });
  }
  const last = rows.length > limit ? rows[limit - 1] : undefined;
  return { items, next: last ? `${num(last.deleted_at)}.${String(last.id)}` : null };
}

/** DELETE /v1/trash — purges now every item of the caller's trash in their own folders (not what others own in folders shared with them). */
export async function emptyTrash(backend: Backend, actor: Actor): Promise<{ purged: number }> {
  const view = await viewOf(backend.db, actor);
  const own = [...view.roles].filter(([, role]) => role === 'owner').map(([ns]) => ns);
  const rows: Array<{ id: unknown }> = await backend.db('nodes').whereIn('ns_id', own).where('owner_id', actor.userId).whereNotNull('deleted_at').whereNull('purged_at').whereNull('trashed_with').select('id');
  const report = await purgeItems(backend.db, rows.map((r) => String(r.id)));
  return { purged: report.items };
}

function parseAfter(after: unknown): [number, string] {
  const match = typeof after === 'string' ? /^(\d{1,16})\.([0-9a-f-]{36})$/.exec(after) : null;
  if (!match) throw new ApiError('bad_request', 'after must be the `next` of a previous page');
  return [Number(match[1]), match[2]!];
}

/** Bytes and files of an item: the file, or every file in the folder's subtree that is live under it or went with it. */
async function itemSize(db: Knex, node: NodeRow): Promise<{ size: number; files: number }> {
  if (node.kind !== 'dir') return { size: node.kind === 'file' ? node.size : 0, files: node.kind === 'file' ? 1 : 0 };
  const rows: Array<{ size: unknown; files: unknown }> = await db.raw(
    `WITH RECURSIVE sub(id) AS (
       SELECT id FROM nodes WHERE parent_id = ? AND purged_at IS NULL AND (deleted_at IS NULL OR trashed_with = ?)
       UNION ALL SELECT n.id FROM nodes n JOIN sub s ON n.parent_id = s.id WHERE n.purged_at IS NULL AND (n.deleted_at IS NULL OR n.trashed_with = ?)
     )
     SELECT COALESCE(SUM(size), 0) AS size, COUNT(*) AS files FROM nodes WHERE id IN (SELECT id FROM sub) AND kind = 'file'`,
    [node.id, node.id, node.id],
  ).then((r: unknown) => (Array.isArray(r) ? r : (r as { rows: Array<{ size: unknown; files: unknown }> }).rows));
  return { size: num(rows[0]?.size ?? 0), files: num(rows[0]?.files ?? 0) };
}

/** Where the node is (or was) in the caller's tree: "/A/B/name"; a share's entry stands where the caller has it. */
async function pathOf(db: Knex, view: View, node: NodeRow): Promise<string> {
  const names: string[] = [];
  let at: NodeRow | undefined = node;
  for (let depth = 0; at && depth < 1000; depth++) {
    const mount = mountOf(view, at);
    if (mount) {
      names.push(mount.name);
      at = await nodeById(db, mount.parent_id);
      continue;
    }
    if (at.parent_id === null) break;
    names.push(at.name);
    at = await nodeById(db, at.parent_id);
  }
  return `/${names.reverse().join('/')}`;
}

async function nodeById(db: Knex, id: string): Promise<NodeRow | undefined> {
  const row: Record<string, unknown> | undefined = await db('nodes').where({ id }).first();
  return row ? nodeRow(row) : undefined;
}
