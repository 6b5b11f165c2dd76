import type { ChangeEntry, ChangesPage } from '../../protocol/types.js';
import { nodeRow, num } from '../db/rows.js';
import { infoFor, roleOn, viewOf, type View } from './access.js';
import type { Actor, Backend } from './context.js';
import { decodeCursor, encodeCursor, type Positions } from './cursor.js';
import { optionalWhole, pageLimit } from './params.js';

/**
 * GET /v1/changes?cursor=C — the current state, as the caller sees it, of every node that changed
 * after C in the namespaces the caller can see, once per node, and the cursor to continue from
 * (DESIGN §5). Namespaces are walked one after another, each in its seq order (commit order). A
 * node the caller can no longer see (moved out of a share) comes as gone; so does the root of a
 * namespace the cursor held and the caller can no longer see (a share revoked, expired or left).
 * A namespace new to the cursor is read from its start. `since` (a client of the global journal)
 * and a cursor of that journal get a full resync: every namespace from its start.
 */
export async function listChanges(backend: Backend, actor: Actor, query: { cursor?: unknown; since?: unknown; limit?: unknown }): Promise<ChangesPage> {
  const db = backend.db;
  const limit = pageLimit(query.limit, backend.settings.limits.max_page_size);
  // A client of the global journal: its position is checked as it always was, and answered from the start.
  optionalWhole(query.since, 'since', 0);
  const from = query.cursor === undefined ? new Map<string, number>() : await decodeCursor(db, actor.userPublicId, query.cursor);
  const view = await viewOf(db, actor);
  const namespaces = await visibleNamespaces(backend, view);
  const visible = new Set(namespaces.map((ns) => ns.publicId));
  const latest = new Map<string, ChangeEntry>();
  const at = new Date().toISOString();

  // Namespaces the caller saw and no longer sees: their roots are gone (what was under them with them).
  const left = [...from.keys()].filter((p) => !visible.has(p));
  if (left.length > 0) {
    const roots: Array<{ root_node_id: unknown }> = await db('namespaces').whereIn('public_id', left).select('root_node_id');
    for (const r of roots) latest.set(String(r.root_node_id), gone(String(r.root_node_id), at));
  }

  const to: Positions = new Map();
  let room = limit;
  let hasMore = false;
  const rows: Array<{ node_id: string }> = [];
  for (const ns of namespaces) {
    const since = from.get(ns.publicId) ?? 0;
    to.set(ns.publicId, since);
    if (room === 0) {
      hasMore ||= ns.head > since;
      continue;
    }
    const page: Array<{ seq: unknown; node_id: unknown }> = await db('changes').where('ns_id', ns.id).andWhere('seq', '>', since).orderBy('seq').limit(room + 1).select('seq', 'node_id');
    const taken = page.slice(0, room);
    if (page.length > room) hasMore = true;
    room -= taken.length;
    if (taken.length > 0) to.set(ns.publicId, num(taken.at(-1)!.seq));
    for (const r of taken) rows.push({ node_id: String(r.node_id) });
  }

  const nodes = new Map<string, ReturnType<typeof nodeRow>>();
  const ids = [...new Set(rows.map((r) => r.node_id))];
  for (let i = 0; i < ids.length; i += 500) {
    const found: Array<Record<string, unknown>> = await db('nodes').whereIn('id', ids.slice(i, i + 500)).whereNull('purged_at');
    for (const row of found) nodes.set(String(row.id), nodeRow(row));
  }
  for (const { node_id } of rows) {
    const node = nodes.get(node_id);
    latest.delete(node_id); // keep each node once, at its last position
    latest.set(node_id, node && roleOn(view, node) ? infoFor(view, node) : gone(node_id, at));
  }
  return { changes: [...latest.values()], cursor: await encodeCursor(db, actor.userPublicId, to), has_more: hasMore };
}

/** GET /v1/changes/head — the caller's current cursor: start here after a full listing. */
export async function changesHead(backend: Backend, actor: Actor): Promise<{ cursor: string }> {
  const namespaces = await visibleNamespaces(backend, await viewOf(backend.db, actor));
  return { cursor: await encodeCursor(backend.db, actor.userPublicId, new Map(namespaces.map((ns) => [ns.publicId, ns.head]))) };
}

interface VisibleNamespace {
  id: number;
  publicId: string;
  /** Its newest seq. */
  head: number;
}

async function visibleNamespaces(backend: Backend, view: View): Promise<VisibleNamespace[]> {
  const rows: Array<Record<string, unknown>> = await backend.db('namespaces').whereIn('id', [...view.roles.keys()]).orderBy('id').select('id', 'public_id', 'next_seq');
  return rows.map((r) => ({ id: num(r.id), publicId: String(r.public_id), head: num(r.next_seq) - 1 }));
}

/** A node that left the caller's view: its id, and nothing else of it. */
function gone(id: string, at: string): ChangeEntry {
  return { id, gone: true, parent_id: null, name: '', kind: 'file', head_version: 0, size: 0, mtime: 0, mode: 0, deleted_at: at, created_at: at };
}
