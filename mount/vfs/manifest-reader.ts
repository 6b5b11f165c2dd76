import type { BlockSource } from '../blocks/block-source.js';
import type { PinnedManifest } from '../blocks/pinned-manifest.js';

/**
 * Read-ahead of a sequential reader, in bytes past what it asked for: twice what it has read in a
 * row so far, from 8 MiB up to 128 MiB — a `head` of a large file fetches little, a long `cat`
 * keeps enough blocks in flight (BlockSource's parallel fetches) to hide each one's round trip.
 * Measured on a cold 1 GiB read over loopback: 8 blocks ahead 165–190 MB/s, 64 MiB 226–242,
 * 128 MiB 272–275 (and less CPU per byte: fewer idle wake-ups of the fetch pipeline).
 */
const READ_AHEAD_MIN = 8 * 1024 * 1024;
const READ_AHEAD_MAX = 128 * 1024 * 1024;

/**
 * Reads of one open file at one version: (offset, length) → blocks, from the cache or fetched, with
 * read-ahead once the access looks sequential.
 */
export class ManifestReader {
  private nextExpected = -1;
  private streak = 0;
  /** Bytes read in a row by the current sequential run. */
  private run = 0;
  /** Blocks before this index were asked for already by read-ahead. */
  private aheadUpTo = 0;

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
    if (position === this.nextExpected) {
      this.streak++;
      this.run += end - position;
    } else {
      this.streak = position === 0 ? 1 : 0;
      this.run = end - position;
      this.aheadUpTo = 0;
    }
    this.nextExpected = end;
    if (this.streak < 2) return;
    // Sequential: fetch the blocks after this read before they are asked for (each block once).
    const m = this.manifest;
    const window = Math.min(READ_AHEAD_MAX, Math.max(READ_AHEAD_MIN, 2 * this.run));
    const first = m.blockAt(end - 1) + 1;
    for (let i = Math.max(first, this.aheadUpTo); i < m.blocks.length && m.offsets[i]! < end + window; i++) {
      const b = m.blocks[i]!;
      this.source.prefetch(b.hash, b.size);
      this.aheadUpTo = i + 1;
    }
  }
}
