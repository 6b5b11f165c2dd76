/**
 * The byte ranges of a staging file that were ever written (its data; the rest are holes, which
 * read as zeros). Lets a copy of a sparse staging file touch only its data: Node has no
 * SEEK_DATA/SEEK_HOLE, and reading the holes of a 5 GiB `truncate -s` costs tens of seconds.
 *
 * Sorted, disjoint, non-adjacent [start, end) ranges. Past MAX_RANGES (scattered random writes)
 * it gives up and reports `undefined`: the caller then reads the whole file.
 */
const MAX_RANGES = 4096;

export class Extents {
  private ranges: [number, number][] | undefined = [];

  /** The data ranges, or undefined when they are no longer tracked. */
  get list(): readonly (readonly [number, number])[] | undefined {
    return this.ranges;
  }

  /** Bytes [start, end) now hold data. */
  add(start: number, end: number): void {
    const r = this.ranges;
    if (!r || end <= start) return;
    const last = r[r.length - 1];
    // Fast paths: appends and rewrites at the end (sequential writes).
    if (!last || start > last[1]) {
      r.push([start, end]);
    } else if (start >= last[0]) {
      last[1] = Math.max(last[1], end);
    } else {
      // First range that ends at or after `start` (may merge), then every range it overlaps or touches.
      let i = 0;
      let lo = 0;
      let hi = r.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (r[mid]![1] < start) lo = mid + 1;
        else hi = mid;
      }
      i = lo;
      let j = i;
      let s = start;
      let e = end;
      while (j < r.length && r[j]![0] <= end) {
        s = Math.min(s, r[j]![0]);
        e = Math.max(e, r[j]![1]);
        j++;
      }
      r.splice(i, j - i, [s, e]);
    }
    if (r.length > MAX_RANGES) this.ranges = undefined;
  }

  /** The file was cut (or grown with a hole) to `size`. */
  truncate(size: number): void {
    const r = this.ranges;
    if (!r) return;
    while (r.length && r[r.length - 1]![0] >= size) r.pop();
    const last = r[r.length - 1];
    if (last && last[1] > size) last[1] = size;
  }

  /** The parts of [from, to) no range covers (undefined when ranges are no longer tracked). */
  gaps(from: number, to: number): [number, number][] | undefined {
    const r = this.ranges;
    if (!r) return undefined;
    const out: [number, number][] = [];
    let at = from;
    for (const [s, e] of r) {
      if (e <= at) continue;
      if (s >= to) break;
      if (s > at) out.push([at, s]);
      at = Math.max(at, e);
      if (at >= to) break;
    }
    if (at < to) out.push([at, to]);
    return out;
  }

  /** How many ranges (undefined when no longer tracked). */
  get count(): number | undefined {
    return this.ranges?.length;
  }

  /** Bytes of data (an upper bound of what a copy writes). */
  get bytes(): number | undefined {
    return this.ranges?.reduce((a, [s, e]) => a + e - s, 0);
  }
}
