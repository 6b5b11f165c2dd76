import { ApiError } from '../../protocol/errors.js';
import { isBlockHash } from '../../protocol/hash.js';
import type { ServerLimits } from '../../protocol/types.js';
import { parseJsonBody } from './json-text.js';

/** The limits a commit body is checked against (a subset of the server's, plain data so a worker thread can take it). */
export type CommitLimits = Pick<ServerLimits, 'max_manifest_blocks' | 'max_block_size' | 'manifest_free_blocks' | 'min_bytes_per_block'>;

/** A commit request, checked and reduced to what the transaction needs. */
export interface CommitBody {
  base_version: number;
  size: number;
  mtime?: number;
  /** How many entries the manifest has (a block may be named more than once). */
  count: number;
  /** The manifest as stored and returned: `[{"hash":…,"size":…},…]`. */
  manifestJson: string;
  /** Each distinct block and its size. */
  distinct: Array<[hash: string, size: number]>;
}

const MAX_MTIME = 8.64e15;

function bad(message: string): ApiError {
  return new ApiError('bad_request', message);
}

function wholeNumber(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw bad(`${field}: must be a whole number from ${min} to ${max}`);
  }
  return value;
}

/**
 * POST /v1/nodes/:id/versions, from the body's bytes to a checked commit: UTF-8, JSON, the
 * fields, every block `{hash, size}`, the sizes adding up, and the manifest's shape. A manifest
 * is at most `max_manifest_blocks` long, and past `manifest_free_blocks` entries its blocks must
 * average at least `min_bytes_per_block` (a quarter of the chunker's minimum): every block a
 * client cuts but the last is at least the minimum, so a long list of tiny blocks is not a file
 * anyone saved, only work for the server. A pure function of its input, so the server runs big
 * bodies in a worker thread (commit-body-pool.ts) and the parse never holds up other requests.
 */
export function parseCommitBody(bytes: Uint8Array, limits: CommitLimits): CommitBody {
  const body = parseJsonBody(bytes);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw bad('the body must be a JSON object');
  const req = body as Record<string, unknown>;
  const baseVersion = wholeNumber(req.base_version, 'base_version', 0, Number.MAX_SAFE_INTEGER);
  const size = wholeNumber(req.size, 'size', 0, Number.MAX_SAFE_INTEGER);
  const mtime = req.mtime === undefined ? undefined : wholeNumber(req.mtime, 'mtime', 0, MAX_MTIME);
  const blocks = req.blocks;
  if (!Array.isArray(blocks)) throw bad('blocks: must be an array of {hash, size}');
  if (blocks.length > limits.max_manifest_blocks) {
    throw new ApiError('too_large', `a manifest may name at most ${limits.max_manifest_blocks} blocks; this one names ${blocks.length}`, { max_manifest_blocks: limits.max_manifest_blocks });
  }
  const sizes = new Map<string, number>();
  const parts: string[] = new Array(blocks.length);
  let total = 0;
  for (let i = 0; i < blocks.length; i++) {
    const block = blocks[i] as { hash?: unknown; size?: unknown } | null;
    if (typeof block !== 'object' || block === null) throw bad(`blocks.${i}: must be {hash, size}`);
    const hash = block.hash;
    if (!isBlockHash(hash)) throw bad(`blocks.${i}.hash: must be 64 lowercase hex characters (BLAKE3-256)`);
    const blockSize = wholeNumber(block.size, `blocks.${i}.size`, 1, limits.max_block_size);
    const known = sizes.get(hash);
    if (known === undefined) sizes.set(hash, blockSize);
    else if (known !== blockSize) throw new ApiError('bad_manifest', `block ${hash} is named with two sizes (${known} and ${blockSize})`);
    total += blockSize;
    parts[i] = `{"hash":"${hash}","size":${blockSize}}`;
  }
  if (total !== size) throw new ApiError('bad_manifest', `size ${size} is not the sum of the block sizes (${total})`);
  const beyondFree = blocks.length - limits.manifest_free_blocks;
  if (beyondFree > 0 && size < beyondFree * limits.min_bytes_per_block) {
    throw new ApiError(
      'bad_manifest',
      `${blocks.length} blocks for ${size} bytes: past ${limits.manifest_free_blocks} blocks a manifest's blocks must average at least ${limits.min_bytes_per_block} bytes`,
      { manifest_free_blocks: limits.manifest_free_blocks, min_bytes_per_block: limits.min_bytes_per_block },
    );
  }
  return { base_version: baseVersion, size, ...(mtime !== undefined && { mtime }), count: blocks.length, manifestJson: `[${parts.join(',')}]`, distinct: [...sizes] };
}
