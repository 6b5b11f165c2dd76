import type { Knex } from 'knex';
import { z } from 'zod';
import { ApiError } from '../../protocol/errors.js';
import { isBlockHash } from '../../protocol/hash.js';
import type { BlockRef, Manifest, VersionInfo } from '../../protocol/types.js';
import { manifest as toManifest, versionInfo, type NodeRow } from '../db/rows.js';
import { assertLive, readableBlocks, visibleNode } from './access.js';
import type { Actor, Backend } from './context.js';
import { journal, mutate } from './journal.js';
import { pageLimit, parseVersion } from './params.js';
import { parseBody } from './validate.js';

export interface NewVersion {
  base_version: number;
  blocks: BlockRef[];
  size: number;
  mtime: number;
}

function commitSchema(maxBlock: number) {
  return z.object({
    base_version: z.number().int().min(0),
    blocks: z.array(
      z.object({
        hash: z.string().refine(isBlockHash, 'must be 64 lowercase hex characters (BLAKE3-256)'),
        size: z.number().int().min(1).max(maxBlock),
      }),
    ),
    size: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
    mtime: z.number().int().min(0).max(8.64e15).optional(),
  });
}

/** `versions` rows with the public id of the device that committed each (what `versionInfo` reads). */
function versionRows(db: Knex): Knex.QueryBuilder {
  return db('versions as v').leftJoin('devices as d', 'd.id', 'v.device_id');
}

async function fileNode(db: Knex, actor: Actor, id: string): Promise<NodeRow> {
  const node = await visibleNode(db, actor, id);
  if (node.kind !== 'file') throw new ApiError('is_a_directory', `"${node.name}" is a folder; only files have versions`);
  return node;
}

export async function listVersions(backend: Backend, actor: Actor, id: string, query: { before?: unknown; limit?: unknown }): Promise<{ versions: VersionInfo[]; next: number | null }> {
  const node = await fileNode(backend.db, actor, id);
  const limit = pageLimit(query.limit, backend.settings.limits.max_page_size);
  const q = versionRows(backend.db)
    .select('v.node_id', 'v.version', 'v.size', 'v.mtime', 'd.public_id as device_public_id', 'v.base_version', 'v.committed_at')
    .where('v.node_id', node.id)
    .orderBy('v.version', 'desc')
    .limit(limit + 1);
  if (query.before !== undefined) q.andWhere('v.version', '<', parseVersion(query.before, node.head_version, 'before'));
  const rows: Array<Record<string, unknown>> = await q;
  const versions = rows.slice(0, limit).map(versionInfo);
  return { versions, next: rows.length > limit ? (versions.at(-1)?.version ?? null) : null };
}

export async function getManifest(backend: Backend, actor: Actor, id: string, v: string): Promise<Manifest> {
  const node = await fileNode(backend.db, actor, id);
  const version = parseVersion(v, node.head_version);
  const row = await versionRows(backend.db).select('v.*', 'd.public_id as device_public_id').where({ 'v.node_id': node.id, 'v.version': version }).first();
  if (!row) throw new ApiError('not_found', `version ${v} not found`);
  return toManifest(row);
}

/** POST /v1/nodes/:id/versions — a new version, if `base_version` is still the head (else 409 with the head). */
export async function commitVersion(backend: Backend, actor: Actor, id: string, body: unknown): Promise<Manifest> {
  const { limits } = backend.settings;
  const blocksField = (body as { blocks?: unknown } | null)?.blocks;
  if (Array.isArray(blocksField) && blocksField.length > limits.max_manifest_blocks) {
    throw new ApiError('too_large', `a manifest may name at most ${limits.max_manifest_blocks} blocks; this one names ${blocksField.length}`, { max_manifest_blocks: limits.max_manifest_blocks });
  }
  const req = parseBody(commitSchema(limits.max_block_size), body);
  const total = req.blocks.reduce((sum, b) => sum + b.size, 0);
  if (total !== req.size) throw new ApiError('bad_manifest', `size ${req.size} is not the sum of the block sizes (${total})`);
  return mutate(backend.db, async (trx) => {
    const node = await fileNode(trx, actor, id);
    await assertLive(trx, node);
    return (await appendVersion(trx, actor, node, { ...req, mtime: req.mtime ?? Date.now() }, 'version.commit')).manifest;
  });
}

/**
 * Appends a version to a file inside a mutation: every block must be one the actor may use
 * (409 with the missing hashes otherwise, invariant 2 and 4), and the head must still be
 * `base_version` (409 `stale_version` otherwise). The head moves with a conditional update, so
 * concurrent commits on one base cannot both win, and versions stay 1..N without gaps.
 */
export async function appendVersion(trx: Knex.Transaction, actor: Actor, node: NodeRow, v: NewVersion, action: string): Promise<{ node: NodeRow; manifest: Manifest }> {
  const distinct = [...new Set(v.blocks.map((b) => b.hash))];
  const usable = await readableBlocks(trx, actor, distinct);
  const missing = distinct.filter((h) => !usable.has(h));
  if (missing.length > 0) {
    throw new ApiError('missing_blocks', `${missing.length} block(s) must be uploaded before this commit`, { missing });
  }
  const wrong = v.blocks.find((b) => usable.get(b.hash) !== b.size);
  if (wrong) throw new ApiError('bad_manifest', `block ${wrong.hash} is ${usable.get(wrong.hash)} bytes, not ${wrong.size}`);

  const version = v.base_version + 1;
  const moved = await trx('nodes')
    .where({ id: node.id, head_version: v.base_version })
    .update({ head_version: version, size: v.size, mtime: v.mtime });
  if (moved !== 1) {
    const head = await trx('nodes').select('head_version').where({ id: node.id }).first();
    throw new ApiError('stale_version', `base_version ${v.base_version} is not the head`, { head_version: Number(head?.head_version ?? 0) });
  }
  const blocks = v.blocks.map((b) => ({ hash: b.hash, size: b.size }));
  const row = {
    node_id: node.id,
    version,
    manifest: JSON.stringify(blocks),
    size: v.size,
    mtime: v.mtime,
    device_id: actor.deviceId,
    base_version: v.base_version,
    committed_at: Date.now(),
  };
  await trx('versions').insert(row);
  const refs = distinct.map((hash) => ({ node_id: node.id, version, hash }));
  for (let i = 0; i < refs.length; i += 300) await trx('version_blocks').insert(refs.slice(i, i + 300));
  const updated: NodeRow = { ...node, head_version: version, size: v.size, mtime: v.mtime };
  await journal(trx, { userId: actor.userId, deviceId: actor.deviceId, action, node: updated, detail: { version, base_version: v.base_version, size: v.size, blocks: v.blocks.length } });
  return { node: updated, manifest: { ...versionInfo({ ...row, device_public_id: actor.devicePublicId }), blocks } };
}

/** Rollback without rewriting history: the old manifest becomes a new head version. */
export async function restoreVersion(backend: Backend, actor: Actor, id: string, v: string): Promise<Manifest> {
  return mutate(backend.db, async (trx) => {
    const node = await fileNode(trx, actor, id);
    await assertLive(trx, node);
    const old = await trx('versions').where({ node_id: node.id, version: parseVersion(v, node.head_version) }).first();
    if (!old) throw new ApiError('not_found', `version ${v} not found`);
    const source = toManifest(old);
    const req = { base_version: node.head_version, blocks: source.blocks, size: source.size, mtime: source.mtime };
    return (await appendVersion(trx, actor, node, req, 'version.restore')).manifest;
  });
}

