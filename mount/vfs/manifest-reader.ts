import type { BlockSource } from '../blocks/block-source.js';
import type { PinnedManifest } from '../blocks/pinned-manifest.js';

const READ_AHEAD_BYTES = 32 * 1024 * 1024;
const READ_AHEAD_BLOCKS = 8;

/**
 * Reads of one open file at one version: (offset, length) → blocks, from the cache or fetched, with
 * read-ahead once the access looks sequential.
 */
export class ManifestReader {
  private nextExpected = -1;
  private streak = 0;

  constructor(
    readonly manifest: PinnedManifest,
    private readonly source: BlockSource,
  ) {}

  async read(target: Buffer, length: number, position: number): Promise<number> {
    const m = this.manifest;
    if (position >= m.size || length <= 0) return 0;
    const end = Math.min(position + length, m.size);
    this.track(position, end);
    const first = m.blockAt(position);
    const parts: Promise<number>[] = [];
    for (let i = first; i < m.blocks.length && m.offsets[i]! < end; i++) {
      const block = m.blocks[i]!;
      const start = m.offsets[i]!;
      const from = Math.max(position, start);
      const to = Math.min(end, start + block.size);
      parts.push(this.source.readInto(block.hash, block.size, target, from - position, from - start, to - from));
    }
    const counts = await Promise.all(parts);
    return counts.reduce((a, b) => a + b, 0);
  }

  private track(position: number, end: number): void {
    if (position === this.nextExpected) this.streak++;
    else this.streak = position === 0 ? 1 : 0;
    this.nextExpected = end;
    if (this.streak < 2) return;
    // Sequential: fetch the blocks after this read in parallel before they are asked for.
    const m = this.manifest;
    let i = m.blockAt(end - 1) + 1;
    let ahead = 0;
    for (let n = 0; i < m.blocks.length && n < READ_AHEAD_BLOCKS && ahead < READ_AHEAD_BYTES; i++, n++) {
      const b = m.blocks[i]!;
      this.source.prefetch(b.hash, b.size);
      ahead += b.size;
    }
  }
}
