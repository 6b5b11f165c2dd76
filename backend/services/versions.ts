import type { Knex } from 'knex';
import { ApiError } from '../../protocol/errors.js';
import type { VersionInfo } from '../../protocol/types.js';
import { num, versionInfo, type NodeRow } from '../db/rows.js';
import { assertLive, readableBlocks, visibleNode, writableNode } from './access.js';
import { lockForCommit } from './block-claims.js';
import { lockNamespacesOf } from './namespaces.js';
import type { CommitBody } from './commit-body.js';
import type { Actor, Backend } from './context.js';
import { journal, mutate } from './journal.js';
import { pageLimit, parseVersion } from './params.js';

/** A version to append: its manifest as stored (JSON text), its length and its distinct blocks with their sizes. */
export interface NewVersion {
  base_version: number;
  size: number;
  mtime: number;
  manifestJson: string;
  count: number;
  distinct: Array<[hash: string, size: number]>;
}

/**
 * The manifest of a stored version as a NewVersion takes it (a restore, a rename over a file),
 * without parsing it: its text as stored, its blocks and their sizes from version_blocks. A
 * manifest may hold 100,000 blocks; parsing and rebuilding it held the event loop ~90 ms.
 */
export async function storedManifest(db: Knex, nodeId: string, version: number): Promise<Pick<NewVersion, 'manifestJson' | 'count' | 'distinct'>> {
  if (version === 0) return { manifestJson: '[]', count: 0, distinct: [] };
  const row = await db('versions').select('manifest').where({ node_id: nodeId, version }).first();
  if (!row) throw new ApiError('not_found', `version ${version} not found`);
  const blocks: Array<{ hash: unknown; size: unknown }> = await db('version_blocks as vb')
    .join('blocks as b', 'b.hash', 'vb.hash')
    .select('vb.hash', 'b.size')
    .where({ 'vb.node_id': nodeId, 'vb.version': version });
  const manifestJson = String(row.manifest);
  return { manifestJson, count: countEntries(manifestJson), distinct: blocks.map((b) => [String(b.hash), num(b.size)]) };
}

/** Entries of a stored manifest (each is one `{"hash":…}` object). */
function countEntries(manifestJson: string): number {
  let n = 0;
  for (let at = manifestJson.indexOf('"hash"'); at !== -1; at = manifestJson.indexOf('"hash"', at + 6)) n++;
  return n;
}

/**
 * A Manifest reply as JSON text: the version's fields, then the manifest as stored. A manifest
 * may hold 100,000 blocks; building and serializing that many objects again for the reply cost
 * the event loop ~30 ms.
 */
export function manifestReply(info: VersionInfo, manifestJson: string): string {
  return `${JSON.stringify(info).slice(0, -1)},"blocks":${manifestJson}}`;
}

/** `versions` rows with the public id and name of the device that committed each (what `versionInfo` reads). */
function versionRows(db: Knex): Knex.QueryBuilder {
  return db('versions as v').leftJoin('devices as d', 'd.id', 'v.device_id');
}

/** The file with this id the actor can see; with `write`, one they may change (403 for a viewer). */
async function fileNode(db: Knex, actor: Actor, id: string, write = false): Promise<NodeRow> {
  const node = await (write ? writableNode : visibleNode)(db, actor, id);
  if (node.kind === 'dir') throw new ApiError('is_a_directory', `"${node.name}" is a folder; only files have versions`);
  if (node.kind !== 'file') throw new ApiError('not_a_file', `"${node.name}" is a link; only files have versions`);
  return node;
}

export async function listVersions(backend: Backend, actor: Actor, id: string, query: { before?: unknown; limit?: unknown }): Promise<{ versions: VersionInfo[]; next: number | null }> {
  const node = await fileNode(backend.db, actor, id);
  const limit = pageLimit(query.limit, backend.settings.limits.max_page_size);
  const q = versionRows(backend.db)
    .select('v.node_id', 'v.version', 'v.size', 'v.mtime', 'd.public_id as device_public_id', 'd.name as device_name', 'v.base_version', 'v.committed_at')
    .where('v.node_id', node.id)
    .orderBy('v.version', 'desc')
    .limit(limit + 1);
  if (query.before !== undefined) q.andWhere('v.version', '<', parseVersion(query.before, node.head_version, 'before'));
  const rows: Array<Record<string, unknown>> = await q;
  const versions = rows.slice(0, limit).map(versionInfo);
  return { versions, next: rows.length > limit ? (versions.at(-1)?.version ?? null) : null };
}

/** GET /v1/nodes/:id/versions/:v — the version's fields and manifest, as JSON text (the manifest as stored, not re-parsed). */
export async function getManifest(backend: Backend, actor: Actor, id: string, v: string): Promise<string> {
  const node = await fileNode(backend.db, actor, id);
  const version = parseVersion(v, node.head_version);
  const row = await versionRows(backend.db).select('v.*', 'd.public_id as device_public_id', 'd.name as device_name').where({ 'v.node_id': node.id, 'v.version': version }).first();
  if (!row) throw new ApiError('not_found', `version ${v} not found`);
  return manifestReply(versionInfo(row), String(row.manifest));
}

/** POST /v1/nodes/:id/versions — a new version, if `base_version` is still the head (else 409 with the head). The body comes checked (commit-body.ts); the reply is JSON text. */
export async function commitVersion(backend: Backend, actor: Actor, id: string, body: CommitBody): Promise<string> {
  return mutate(backend.db, async (trx) => {
    await lockNamespacesOf(trx, [id]);
    const node = await fileNode(trx, actor, id, true);
    await assertLive(trx, node);
    const appended = await appendVersion(trx, actor, node, { ...body, mtime: body.mtime ?? Date.now() }, 'version.commit');
    return manifestReply(appended.info, body.manifestJson);
  });
}

/**
 * Appends a version to a file inside a mutation: every block must be one the actor may use
 * (409 with the missing hashes otherwise, invariant 2 and 4), and the head must still be
 * `base_version` (409 `stale_version` otherwise). The head moves with a conditional update, so
 * concurrent commits on one base cannot both win, and versions stay 1..N without gaps.
 */
export async function appendVersion(trx: Knex.Transaction, actor: Actor, node: NodeRow, v: NewVersion, action: string): Promise<{ node: NodeRow; info: VersionInfo }> {
  const distinct = v.distinct.map(([hash]) => hash);
  await lockForCommit(trx, distinct);
  const usable = await readableBlocks(trx, actor, distinct);
  const missing = distinct.filter((h) => !usable.has(h));
  if (missing.length > 0) {
    throw new ApiError('missing_blocks', `${missing.length} block(s) must be uploaded before this commit`, { missing });
  }
  const wrong = v.distinct.find(([hash, size]) => usable.get(hash) !== size);
  if (wrong) throw new ApiError('bad_manifest', `block ${wrong[0]} is ${usable.get(wrong[0])} bytes, not ${wrong[1]}`);

  const version = v.base_version + 1;
  const moved = await trx('nodes')
    .where({ id: node.id, head_version: v.base_version })
    .update({ head_version: version, size: v.size, mtime: v.mtime });
  if (moved !== 1) {
    const head = await trx('nodes').select('head_version').where({ id: node.id }).first();
    throw new ApiError('stale_version', `base_version ${v.base_version} is not the head`, { head_version: Number(head?.head_version ?? 0) });
  }
  const row = {
    node_id: node.id,
    version,
    manifest: v.manifestJson,
    size: v.size,
    mtime: v.mtime,
    device_id: actor.deviceId,
    base_version: v.base_version,
    committed_at: Date.now(),
  };
  await trx('versions').insert(row);
  const refs = distinct.map((hash) => ({ node_id: node.id, version, hash, owner_id: node.owner_id, ns_id: node.ns_id }));
  for (let i = 0; i < refs.length; i += 300) await trx('version_blocks').insert(refs.slice(i, i + 300));
  const updated: NodeRow = { ...node, head_version: version, size: v.size, mtime: v.mtime };
  await journal(trx, { userId: actor.userId, deviceId: actor.deviceId, action, node: updated, detail: { version, base_version: v.base_version, size: v.size, blocks: v.count } });
  return { node: updated, info: versionInfo({ ...row, device_public_id: actor.devicePublicId, device_name: actor.deviceName }) };
}

/** Rollback without rewriting history: the old manifest becomes a new head version. */
export async function restoreVersion(backend: Backend, actor: Actor, id: string, v: string): Promise<string> {
  return mutate(backend.db, async (trx) => {
    await lockNamespacesOf(trx, [id]);
    const node = await fileNode(trx, actor, id, true);
    await assertLive(trx, node);
    const version = parseVersion(v, node.head_version);
    const old = await trx('versions').select('size', 'mtime').where({ node_id: node.id, version }).first();
    if (!old) throw new ApiError('not_found', `version ${v} not found`);
    const manifest = await storedManifest(trx, node.id, version);
    const req = { base_version: node.head_version, size: num(old.size), mtime: num(old.mtime), ...manifest };
    return manifestReply((await appendVersion(trx, actor, node, req, 'version.restore')).info, manifest.manifestJson);
  });
}

