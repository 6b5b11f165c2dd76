import type { BlockRef } from '../../protocol/types.js';

/** A manifest with the running offsets of its blocks: maps a byte range of a version to its blocks. */
export class PinnedManifest {
  readonly offsets: number[];
  readonly size: number;

  constructor(
    readonly version: number,
    readonly blocks: BlockRef[],
  ) {
    this.offsets = new Array<number>(blocks.length);
    let off = 0;
    for (let i = 0; i < blocks.length; i++) {
      this.offsets[i] = off;
      off += blocks[i]!.size;
    }
    this.size = off;
  }

  /** Index of the block holding byte `offset` (binary search), or -1 past the end. */
  blockAt(offset: number): number {
    if (offset < 0 || offset >= this.size) return -1;
    let lo = 0;
    let hi = this.blocks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.offsets[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}
