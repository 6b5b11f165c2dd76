import type { FileHandle } from 'node:fs/promises';
import { readFully } from '../blocks/file-io.js';
import { Extents } from '../model/extents.js';
import type { ManifestReader } from './manifest-reader.js';

/**
 * Reads of queued content saved on a version without downloading it (ops.ts ContentOp `base`):
 * the staging file where it holds bytes (`present`) and past the version (`limit`), the version's
 * blocks everywhere else.
 */
export class LayeredReader {
  private readonly present = new Extents();

  constructor(
    private readonly fh: FileHandle,
    present: readonly (readonly [number, number])[],
    private readonly base: ManifestReader,
    private readonly limit: number,
    private readonly size: number,
  ) {
    for (const [a, b] of present) this.present.add(a, b);
  }

  async read(buf: Buffer, length: number, position: number): Promise<number> {
    const end = Math.min(position + length, this.size);
    if (position >= end) return 0;
    let at = position;
    for (const [from, to] of this.present.gaps(position, Math.min(end, this.limit)) ?? []) {
      if (at < from) await readFully(this.fh, buf.subarray(at - position), from - at, at);
      await this.base.read(buf.subarray(from - position), to - from, from);
      at = to;
    }
    if (at < end) await readFully(this.fh, buf.subarray(at - position), end - at, at);
    return end - position;
  }
}
