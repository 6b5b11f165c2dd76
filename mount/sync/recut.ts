import { open } from 'node:fs/promises';
import type { BlockRef } from '../../protocol/types.js';
import { fillFromBase, type BaseFill } from '../blocks/base-fill.js';
import { PinnedManifest } from '../blocks/pinned-manifest.js';
import type { ChunkRef } from '../chunker/pool.js';
import { Extents } from '../model/extents.js';
import type { ContentOp } from '../model/ops.js';
import type { SendContext } from './send-context.js';

/** The blocks of a save, and those of them cut now (their bytes are in the staging file: upload what the server lacks). */
export interface CutSave {
  refs: BlockRef[];
  fresh: ChunkRef[];
}

/** Bytes cut per window past the last change, in units of the largest chunk. */
const WINDOW_CHUNKS = 4;

/**
 * A whole staging file cut into blocks — or, for a save made on a version without downloading it
 * (ContentOp `base`), only its changed part: the version's blocks before the block holding the
 * first changed byte are kept; from that block on the file is cut again window by window (the
 * staging file filled from the version where it holds nothing) until a cut lands on a boundary
 * of the version's blocks past the last change — chunking restarts at every cut, so from there on
 * the version's blocks are the file's — or at the end. A one-byte edit of a big file reads and
 * hashes a few blocks, not the file. `full` cuts the whole file (filling all of it first).
 */
export async function cutSave(ctx: SendContext, op: ContentOp, full = false): Promise<CutSave> {
  const params = ctx.config.chunking;
  if (!op.base) {
    const fresh = await ctx.pool.chunkFile(op.staging, params);
    return { refs: fresh, fresh };
  }
  const m = await baseManifest(ctx, op.base.sid, op.base.version);
  const present = new Extents();
  for (const [a, b] of op.present ?? []) present.add(a, b);
  const limit = op.base.limit;
  const firstChange = full ? 0 : Math.min(op.changed?.[0] ?? Infinity, limit, op.size);
  if (firstChange >= m.size && op.size === m.size) return { refs: m.blocks, fresh: [] };
  // The block holding the first change (for an append, the last block: it ended at the end of the file, not at a cut).
  const k = m.blocks.length === 0 ? 0 : firstChange >= m.size ? m.blocks.length - 1 : m.blockAt(firstChange);
  const start = m.blocks.length === 0 ? 0 : m.offsets[k]!;
  const lastChange = Math.max(op.changed?.[1] ?? 0, firstChange);
  const resyncAt = !full && op.size === m.size && limit >= m.size ? m.offsets.filter((o) => o > start && o >= lastChange) : [];
  const fh = await open(op.staging, 'r+');
  try {
    const fill: BaseFill = { fh, present, base: m, limit, source: ctx.source };
    const fresh: ChunkRef[] = [];
    const step = WINDOW_CHUNKS * params.max;
    let from = start;
    let windowEnd = Math.min(op.size, Math.max(start, lastChange) + step);
    for (;;) {
      await fillFromBase(fill, from, windowEnd);
      const final = windowEnd >= op.size;
      const cut = await ctx.pool.chunkFile(op.staging, params, { start: from, end: windowEnd, final, resyncAfter: lastChange, resyncAt });
      fresh.push(...cut);
      const last = cut.at(-1);
      const end = last ? last.offset + last.size : from;
      if (last && end >= lastChange && resyncAt.includes(end)) {
        const j = m.offsets.indexOf(end);
        return { refs: [...m.blocks.slice(0, k), ...fresh, ...m.blocks.slice(j)], fresh };
      }
      if (final) return { refs: [...m.blocks.slice(0, k), ...fresh], fresh };
      // The bytes after the last cut are cut again with the next window.
      from = end;
      windowEnd = Math.min(op.size, windowEnd + step);
    }
  } finally {
    await fh.close();
  }
}

async function baseManifest(ctx: SendContext, sid: string, version: number): Promise<PinnedManifest> {
  const saved = await ctx.store.getManifest(sid, version).catch(() => undefined);
  return new PinnedManifest(version, saved ?? (await ctx.client.manifest(sid, version)).blocks);
}
