import type { Knex } from 'knex';
import { ApiError } from '../../protocol/errors.js';
import { HISTORY_TIME_FORMS, parseHistoryTime } from '../../protocol/history-time.js';
import type { HistoryEntry, HistoryPage } from '../../protocol/types.js';
import { nodeRow, num, numOrNull, type NodeRow, type Row } from '../db/rows.js';
import { mountOf, notFound, roleOn, viewOf, visibleIn, type View } from './access.js';
import type { Actor, Backend } from './context.js';
import { pageLimit } from './params.js';

/**
 * GET /v1/history?at=TIME&parent_id=ID — a folder and its children as they were at TIME, read from
 * the journal (DESIGN §3, §5): every `changes` row keeps a node's state (place, name, head version,
 * trashed or not) after the change, so a node's state at T is its latest row at or before T.
 *
 * Two kinds of rows carry a place:
 * - the node's own (create, rename, move, commit, delete, restore…), in whichever namespace it was
 *   in. A move across namespaces leaves a `node.leave` row (no folder) in the namespace it left and
 *   the move in the one it entered, in one transaction: at the same millisecond the leave is the
 *   earlier of the two (seqs of different namespaces do not compare);
 * - a share's entry in its grantee's tree (granted, moved or renamed there, left, revoked), kept in
 *   the grantee's root namespace with the grantee's placement. Those say where the grantee saw the
 *   shared node; only that grantee's own listings read them.
 *
 * What the caller may see is decided now, not at T (access.ts): the folder must be visible to them
 * now, and so must every child (a node moved out of a share since is left out for its grantees).
 * Kind, mode and a link's target are the node's current ones (the journal does not keep them; a
 * node's kind and a link's target never change); a file's size and mtime are those of its version
 * at T. Purged nodes are gone (no row left to join), and so is a file whose version at T was purged.
 */

/** Actions journaled in a grantee's root namespace with the grantee's placement of a share. */
const ENTRY_ACTIONS = ['share.grant', 'share.role', 'share.entry', 'share.revoke', 'share.leave'];
const ENTRY_LIST = ENTRY_ACTIONS.map(() => '?').join(', ');

/** Newest state first; at one millisecond a `node.leave` is older than the move it is part of. */
const LATEST_FIRST = "c.at DESC, CASE WHEN c.action = 'node.leave' THEN 0 ELSE 1 END DESC, c.seq DESC";

interface HistoryQuery {
  at?: unknown;
  parent_id?: unknown;
  after?: unknown;
  limit?: unknown;
}

/** A node's state at T as the journal keeps it. */
interface PastState {
  parent_id: string | null;
  name: string;
  head_version: number;
  deleted_at: number | null;
}

export async function historyPage(backend: Backend, actor: Actor, query: HistoryQuery): Promise<HistoryPage> {
  const db = backend.db;
  const at = parseAt(query.at);
  const limit = pageLimit(query.limit, backend.settings.limits.max_page_size);
  if (query.after !== undefined && typeof query.after !== 'string') throw new ApiError('bad_request', 'after must be given once');
  if (query.parent_id !== undefined && typeof query.parent_id !== 'string') throw new ApiError('bad_request', 'parent_id must be given once');
  const after = query.after || undefined;
  const view = await viewOf(db, actor);
  const folder = await visibleIn(db, view, query.parent_id ?? view.rootId, 'parent_id');
  if (folder.kind !== 'dir') throw new ApiError('not_a_directory', `"${folder.name}" is not a folder`);

  const state = await ownStateAt(db, folder.id, at);
  if (!state || state.deleted_at !== null) throw notFound(`folder at ${new Date(at).toISOString()}`);
  const node = entryOf(folder, await placementFor(db, view, folder, state, at), null);

  const own = await ownChildren(db, view, folder.id, at, after, limit);
  // Shares with the caller show in the caller's own folders only.
  const entries = folder.owner_id === view.userId ? await entryChildren(db, view, folder.id, at, after) : [];
  const merged = [...own.children, ...entries].sort((a, b) => byteOrder(a.name, b.name));
  // Entries past the last name the journal query looked at wait for the page that gets there.
  const inRange = own.last === null ? merged : merged.filter((c) => byteOrder(c.name, own.last!) <= 0);
  const children = inRange.slice(0, limit);
  const next = inRange.length > limit ? children.at(-1)!.name : own.last;
  return { node, children, next };
}

/** Names compare by their UTF-8 bytes, as the database orders them (SQLite's BINARY, PostgreSQL's "C"). */
function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** `at` as the API takes it (protocol/history-time.ts): 400 for anything else, and for a time still to come. */
function parseAt(raw: unknown): number {
  if (raw === undefined) throw new ApiError('bad_request', `at is required: a time, ${HISTORY_TIME_FORMS}`);
  if (typeof raw !== 'string') throw new ApiError('bad_request', 'at must be given once');
  const at = parseHistoryTime(raw);
  if (at === undefined) throw new ApiError('bad_request', `at must be a time, ${HISTORY_TIME_FORMS} (a "+" in a URL must be written %2B)`);
  // The journal cannot answer for a time still to come: an answer could change once it comes.
  if (at > Date.now()) throw new ApiError('bad_request', `at is in the future (${new Date(at).toISOString()}): history answers for past times only`);
  return at;
}

/** The node's own state at T (not a share entry's), or undefined when it did not exist yet. */
async function ownStateAt(db: Knex, nodeId: string, at: number): Promise<PastState | undefined> {
  const rows: Row[] = await db.raw(
    `SELECT c.parent_id, c.name, c.head_version, c.deleted_at FROM changes c
     WHERE c.node_id = ? AND c.at <= ? AND c.action NOT IN (${ENTRY_LIST})
     ORDER BY ${LATEST_FIRST} LIMIT 1`,
    [nodeId, at, ...ENTRY_ACTIONS],
  ).then(rowsOf);
  return rows[0] ? pastState(rows[0]) : undefined;
}

/** Where the caller saw this share of theirs at T: their entry then, else (no entry yet) where it is now. */
async function placementFor(db: Knex, view: View, folder: NodeRow, own: PastState, at: number): Promise<PastState> {
  const mount = mountOf(view, folder);
  if (!mount) return own;
  const rows: Row[] = await db.raw(
    `SELECT c.parent_id, c.name, c.head_version, c.deleted_at FROM changes c
     WHERE c.ns_id = ? AND c.node_id = ? AND c.at <= ? AND c.action IN (${ENTRY_LIST})
     ORDER BY c.at DESC, c.seq DESC LIMIT 1`,
    [view.rootNs, folder.id, at, ...ENTRY_ACTIONS],
  ).then(rowsOf);
  const entry = rows[0] ? pastState(rows[0]) : undefined;
  const place = entry && entry.deleted_at === null ? entry : { parent_id: mount.parent_id, name: mount.name };
  return { ...own, parent_id: place.parent_id, name: place.name };
}

/**
 * The folder's own children at T after `after`, by name, at most `limit` (visible to the caller
 * now). `last`: the last name looked at when more may follow (what was left out — not visible, its
 * version purged — still moves the page on), else null.
 */
async function ownChildren(db: Knex, view: View, folderId: string, at: number, after: string | undefined, limit: number): Promise<{ children: HistoryEntry[]; last: string | null }> {
  const rows: Row[] = await db.raw(
    `WITH candidates AS (
       SELECT DISTINCT node_id FROM changes WHERE parent_id = ? AND at <= ? AND action NOT IN (${ENTRY_LIST})
     ), latest AS (
       SELECT c.node_id, c.parent_id, c.name, c.head_version, c.deleted_at,
              ROW_NUMBER() OVER (PARTITION BY c.node_id ORDER BY ${LATEST_FIRST}) AS rn
       FROM changes c
       WHERE c.node_id IN (SELECT node_id FROM candidates) AND c.at <= ? AND c.action NOT IN (${ENTRY_LIST})
     )
     SELECT n.*, l.name AS past_name, l.head_version AS past_version, v.size AS version_size, v.mtime AS version_mtime, v.version AS version_found
     FROM latest l
     JOIN nodes n ON n.id = l.node_id
     LEFT JOIN versions v ON v.node_id = l.node_id AND v.version = l.head_version
     WHERE l.rn = 1 AND l.parent_id = ? AND l.deleted_at IS NULL AND l.name > ?
     ORDER BY l.name
     LIMIT ?`,
    [folderId, at, ...ENTRY_ACTIONS, at, ...ENTRY_ACTIONS, folderId, after ?? '', limit + 1],
  ).then(rowsOf);
  const children: HistoryEntry[] = [];
  for (const row of rows.slice(0, limit)) {
    const child = pastChild(view, row, { parent_id: folderId, name: String(row.past_name), head_version: num(row.past_version), deleted_at: null });
    if (child) children.push(child);
  }
  return { children, last: rows.length > limit ? String(rows[limit - 1]!.past_name) : null };
}

/** The caller's share entries placed in this folder of theirs at T, after `after` (a user has few: all of them). */
async function entryChildren(db: Knex, view: View, folderId: string, at: number, after: string | undefined): Promise<HistoryEntry[]> {
  const placed: Row[] = await db.raw(
    `WITH candidates AS (
       SELECT DISTINCT node_id FROM changes WHERE ns_id = ? AND parent_id = ? AND at <= ? AND action IN (${ENTRY_LIST})
     ), latest AS (
       SELECT c.node_id, c.parent_id, c.name, c.deleted_at, ROW_NUMBER() OVER (PARTITION BY c.node_id ORDER BY c.at DESC, c.seq DESC) AS rn
       FROM changes c
       WHERE c.ns_id = ? AND c.node_id IN (SELECT node_id FROM candidates) AND c.at <= ? AND c.action IN (${ENTRY_LIST})
     )
     SELECT node_id, name FROM latest WHERE rn = 1 AND parent_id = ? AND deleted_at IS NULL AND name > ?`,
    [view.rootNs, folderId, at, ...ENTRY_ACTIONS, view.rootNs, at, ...ENTRY_ACTIONS, folderId, after ?? ''],
  ).then(rowsOf);
  const out: HistoryEntry[] = [];
  for (const entry of placed) {
    const id = String(entry.node_id);
    const own = await ownStateAt(db, id, at);
    // The shared node itself was in its owner's trash at T (or not made yet): its entry showed nothing.
    if (!own || own.deleted_at !== null) continue;
    const row: Row | undefined = await db('nodes as n')
      .leftJoin('versions as v', (j) => j.on('v.node_id', 'n.id').andOnVal('v.version', own.head_version))
      .where('n.id', id)
      .first('n.*', 'v.size as version_size', 'v.mtime as version_mtime', 'v.version as version_found');
    const child = row && pastChild(view, row, { ...own, parent_id: folderId, name: String(entry.name) });
    if (child) out.push(child);
  }
  return out;
}

/** A child row (a `nodes` row with its version at T) as the caller sees it at `place`; undefined when left out. */
function pastChild(view: View, row: Row, place: PastState): HistoryEntry | undefined {
  const node = nodeRow(row);
  if (!roleOn(view, node)) return undefined;
  const hasVersion = row.version_found !== null && row.version_found !== undefined;
  // A file whose content at T was purged (retention) has nothing left to show.
  if (node.kind === 'file' && place.head_version > 0 && !hasVersion) return undefined;
  return entryOf(node, place, hasVersion ? { size: num(row.version_size), mtime: num(row.version_mtime) } : null);
}

/** The API shape of a node at T: its place then, its version then (size and mtime from `version` when it has one). */
function entryOf(node: NodeRow, place: PastState, version: { size: number; mtime: number } | null): HistoryEntry {
  const isFile = node.kind === 'file';
  return {
    id: node.id,
    parent_id: place.parent_id,
    name: place.name,
    kind: node.kind,
    version: isFile ? place.head_version : 0,
    size: isFile ? (version?.size ?? 0) : node.kind === 'link' ? node.size : 0,
    mtime: version?.mtime ?? node.mtime,
    mode: node.mode,
    ...(node.kind === 'link' && { target: node.target ?? '' }),
  };
}

function pastState(row: Row): PastState {
  return {
    parent_id: row.parent_id === null || row.parent_id === undefined ? null : String(row.parent_id),
    name: String(row.name),
    head_version: num(row.head_version),
    deleted_at: numOrNull(row.deleted_at),
  };
}

/** The rows of a raw query: pg answers `{rows}`, sqlite3 the array itself. */
function rowsOf(result: unknown): Row[] {
  return Array.isArray(result) ? (result as Row[]) : ((result as { rows: Row[] }).rows ?? []);
}
