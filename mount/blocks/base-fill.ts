import type { FileHandle } from 'node:fs/promises';
import type { Extents } from '../model/extents.js';
import type { BlockSource } from './block-source.js';
import { writeFully } from './file-io.js';
import type { PinnedManifest } from './pinned-manifest.js';

/**
 * A staging file opened on a version without downloading it (DESIGN §6): bytes [0, limit) are the
 * version's wherever `present` (writes, and earlier fills) does not cover them.
 */
export interface BaseFill {
  fh: FileHandle;
  present: Extents;
  base: PinnedManifest;
  /** Bytes of the version still in the file (a truncate lowers it: what it cut off is gone). */
  limit: number;
  source: BlockSource;
  /** Called with the bytes about to be written (room in the cache bound). */
  reserve?: (bytes: number) => Promise<void>;
}

const ZERO_CHUNK = Buffer.alloc(1024 * 1024);

/**
 * Writes into the staging file the version's bytes of [from, to) that it does not hold yet (the
 * blocks come from the cache or the server, verified), and records them as present. Zeros are
 * left as holes. The caller keeps writes to the file out while it runs.
 */
export async function fillFromBase(f: BaseFill, from: number, to: number): Promise<void> {
  const end = Math.min(to, f.limit, f.base.size);
  if (from >= end) return;
  const gaps = f.present.gaps(from, end);
  if (!gaps) throw new Error('the staging file no longer tracks which ranges it holds');
  const m = f.base;
  for (const [gapStart, gapEnd] of gaps) {
    for (let i = m.blockAt(gapStart); i >= 0 && i < m.blocks.length && m.offsets[i]! < gapEnd; i++) {
      const block = m.blocks[i]!;
      const blockStart = m.offsets[i]!;
      const s = Math.max(gapStart, blockStart);
      const e = Math.min(gapEnd, blockStart + block.size);
      const part = (await f.source.get(block.hash, block.size)).subarray(s - blockStart, e - blockStart);
      if (!isZeros(part)) {
        await f.reserve?.(part.length);
        await writeFully(f.fh, part, s);
      }
      f.present.add(s, e);
    }
  }
}

function isZeros(bytes: Buffer): boolean {
  for (let at = 0; at < bytes.length; at += ZERO_CHUNK.length) {
    const piece = bytes.subarray(at, at + ZERO_CHUNK.length);
    if (!piece.equals(ZERO_CHUNK.subarray(0, piece.length))) return false;
  }
  return true;
}
