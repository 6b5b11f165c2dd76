import { finished, Readable } from 'node:stream';
import { z } from 'zod';
import { ApiError } from '../../protocol/errors.js';
import { BlockNotFoundError, BlockTruncatedError, type ByteRange } from '../blockstore/blockstore.js';
import { readableBlock, readableBlocks } from './access.js';
import { claimChecked, claimForUpload, recordUpload } from './block-claims.js';
import { isIntact, markIntact, readVerified } from './block-integrity.js';
import type { Actor, Backend } from './context.js';
import { journal, mutate } from './journal.js';
import { assertHash } from './params.js';
import { parseBody } from './validate.js';
import { VerifyStream } from './verify-stream.js';


/**
 * POST /v1/blocks/check — which of these blocks the caller must upload. Answered only from what
 * the caller may already use (invariant 4): a block another user stored is "missing" for this one
 * just like an unknown block, with the same queries, so neither the answer nor its timing tells.
 */
export async function checkBlocks(backend: Backend, actor: Actor, body: unknown): Promise<{ missing: string[] }> {
  const max = backend.settings.limits.max_check_hashes;
  const hashesField = (body as { hashes?: unknown } | null)?.hashes;
  if (Array.isArray(hashesField) && hashesField.length > max) {
    throw new ApiError('too_large', `at most ${max} hashes per check`, { max_check_hashes: max });
  }
  const { hashes } = parseBody(z.object({ hashes: z.array(z.string()) }), body);
  hashes.forEach(assertHash);
  const distinct = [...new Set(hashes)];
  const usable = await readableBlocks(backend.db, actor, distinct);
  const lost = await claimChecked(backend.db, [...usable.keys()], backend.settings.history.gc_grace_ms);
  return { missing: distinct.filter((h) => !usable.has(h) || lost.has(h)) };
}

/**
 * PUT /v1/blocks/:hash — streams the body through BLAKE3 into the store; the block becomes
 * visible only if the bytes hash to `hash` (invariant 3). The bytes are always received and
 * written in full, also when the store already holds the block: the uploader proves possession,
 * and the response time does not reveal whether anyone else had it.
 */
export async function putBlock(backend: Backend, actor: Actor, hash: string, body: Readable, declaredLength: number | undefined): Promise<{ hash: string; size: number }> {
  assertHash(hash);
  const max = backend.settings.limits.max_block_size;
  if (declaredLength !== undefined && declaredLength > max) {
    throw new ApiError('too_large', `block of ${declaredLength} bytes exceeds the server's maximum block size of ${max} bytes`);
  }
  const verify = new VerifyStream(hash, max, declaredLength);
  // A client that goes away mid-upload fails the put (nothing stored) instead of leaving it waiting.
  // `finished` also reports a body that was already closed before we got here (the client left
  // while the request waited for authentication): listening for 'close' now would wait forever.
  const stopWatching = finished(body, { writable: false }, (err) => {
    if (err) verify.destroy(new ApiError('bad_request', 'upload aborted before the end of the body'));
  });
  verify.once('error', () => body.unpipe(verify));
  try {
    await backend.store.put(hash, body.pipe(verify), { beforePublish: () => claimForUpload(backend.db, hash, verify.bytes) });
  } finally {
    stopWatching();
  }
  const size = verify.bytes;
  await mutate(backend.db, async (trx) => {
    const now = Date.now();
    // Verified bytes now stand under this id: usable, and a block marked corrupt is repaired.
    await recordUpload(trx, hash);
    await trx('block_owners').insert({ user_id: actor.userId, hash, created_at: now }).onConflict(['user_id', 'hash']).ignore();
    await journal(trx, { userId: actor.userId, deviceId: actor.deviceId, action: 'block.put', detail: { hash, size } });
  });
  // The bytes just stored were hashed on the way in: a download need not check them again (and
  // its speed then tells nobody whether someone else had read the block before).
  markIntact(backend.store, hash);
  return { hash, size };
}

export interface BlockDownload {
  size: number;
  range: ByteRange | null;
  body: Readable;
}

/**
 * GET /v1/blocks/:hash — 404 unless the caller may read the block (invariant 4); 500
 * block_corrupt, never the wrong bytes, when the store's copy is damaged (block-integrity.ts).
 * On a store that signs URLs (GCS), the answer is a short-lived URL to read the bytes from the
 * store itself (`redirect`: block bytes do not pass through the backends), unless `direct` (the
 * client's fallback when such a URL failed it), signed URLs are off (settings.downloads) or the
 * block is marked damaged (looked at here).
 */
export async function getBlock(backend: Backend, actor: Actor, hash: string, rangeHeader: string | undefined, opts: { direct?: boolean } = {}): Promise<BlockDownload | { redirect: string }> {
  assertHash(hash);
  const block = await readableBlock(backend.db, actor, hash);
  if (block === undefined) throw new ApiError('not_found', 'block not found');
  const size = block.size;
  const range = rangeHeader ? parseRange(rangeHeader, size) : null;
  // Counted before any byte is read: a refused download costs the server nothing.
  await backend.rates.download(actor.userId, range ? range.end - range.start + 1 : size);
  const { signed_urls, signed_url_ttl_ms } = backend.settings.downloads;
  if (signed_urls && !opts.direct && !block.corrupt && backend.store.signedUrl) {
    // No key to sign with (or no permission): the bytes come through here instead.
    const url = await backend.store.signedUrl(hash, signed_url_ttl_ms).catch(() => undefined);
    if (url) return { redirect: url };
  }
  if (block.corrupt || !isIntact(backend.store, hash)) {
    // First read of this block in this process, or a block marked damaged (looked at again: it
    // may have been put back): check it whole, then serve from the checked bytes.
    const bytes = await readVerified(backend.db, backend.store, hash, size, block.corrupt);
    return { size, range, body: Readable.from([range ? bytes.subarray(range.start, range.end + 1) : bytes]) };
  }
  try {
    // The whole block is asked for as the range [0, size): the store then reads exactly the bytes
    // the Content-Length promises (and fails, rather than ends short, if the file has fewer).
    return { size, range, body: await backend.store.get(hash, range ?? { start: 0, end: size - 1 }) };
  } catch (err) {
    // Gone or shorter since it was checked: looked at whole, and marked corrupt like any damaged block (readVerified throws).
    if (err instanceof BlockNotFoundError || err instanceof BlockTruncatedError) await readVerified(backend.db, backend.store, hash, size);
    throw err;
  }
}

/** A single `bytes=` range (RFC 9110 §14.1.2); null for forms we serve whole (multiple ranges, other units). */
export function parseRange(header: string, size: number): ByteRange | null {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match) return null;
  const [, first, last] = match as unknown as [string, string, string];
  let start: number;
  let end: number;
  if (first === '') {
    if (last === '') return null;
    const suffix = Number(last);
    if (suffix === 0) throw unsatisfiable(size);
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(first);
    end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
    if (last !== '' && Number(last) < start) return null;
  }
  if (start >= size) throw unsatisfiable(size);
  return { start, end };
}

function unsatisfiable(size: number): ApiError {
  return new ApiError('range_not_satisfiable', `range not satisfiable for a block of ${size} bytes`, { size });
}
