/**
 * FastCDC content-defined chunking (Xia et al., "The Design of Fast Content-Defined Chunking for
 * Data Deduplication Based Storage Systems", IEEE TPDS 2020), as a pure streaming cutter.
 *
 * - Gear rolling hash: `h = (h << 1) + GEAR[byte]` on 32 bits. Bit k of `h` depends on the last
 *   k + 1 bytes only, so the masks below take the TOP bits (bit 31 sees a 32-byte window).
 * - Cut-point skipping: the first `min` bytes of a chunk are never hashed (the hash restarts at 0
 *   at offset `min` of every chunk).
 * - Normalized chunking: offsets in [min, avg) of a chunk are tested against `maskS` (bits + level
 *   one-bits, cuts are rarer), offsets in [avg, max) against `maskL` (bits - level one-bits, cuts
 *   are likelier), with bits = round(log2(avg)). A chunk that reaches `max` bytes is cut there.
 * - A cut is placed AFTER the byte whose hash matched: chunk length = offset of that byte + 1.
 * - At end of stream the remainder is the last chunk (so only the last chunk may be < min); an
 *   empty stream has no chunks.
 *
 * Every client of a server must cut identically (DESIGN §2), so everything here is a fixed
 * constant: the GEAR table, the mask layout and the default normalization level (2). Changing any
 * of them changes every block id of every file: test/mount/chunker.test.ts pins them.
 */
import type { ChunkingParams } from '../../protocol/types.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;

/** DESIGN §2 defaults; the real values come from the server's `GET /v1/config`. */
export const DEFAULT_CHUNKING: Readonly<ChunkingParams> = Object.freeze({ min: 256 * KiB, avg: 1 * MiB, max: 4 * MiB });

/** Normalization level used by Stratus (NC-2 in the paper). Part of the on-the-wire contract. */
export const DEFAULT_LEVEL = 2;

/** Seed of the GEAR table PRNG: ASCII "STRA". Part of the on-the-wire contract. */
export const GEAR_SEED = 0x53545241;

/**
 * mulberry32 (Tommy Ettinger, public domain): a tiny 32-bit PRNG. Used only to build GEAR at
 * module load, so the table is reproducible from this file alone.
 */
function mulberry32(seed: number): () => number {
  let a = seed | 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** The 256-entry gear table: the first 256 outputs of mulberry32(GEAR_SEED), as int32. */
export const GEAR: Int32Array = (() => {
  const next = mulberry32(GEAR_SEED);
  const table = new Int32Array(256);
  for (let i = 0; i < 256; i++) table[i] = next() | 0;
  return table;
})();

/** `n` one-bits in the top of a 32-bit word, as int32 (n in 1..31). */
function topMask(n: number): number {
  return (~0 << (32 - n)) | 0;
}

export interface CutterOptions {
  /** Normalization level 0..3; defaults to DEFAULT_LEVEL. Only for experiments: clients must agree. */
  level?: number;
}

/** Throws if the params cannot be used; returns the two masks. */
export function chunkingMasks(params: ChunkingParams, level = DEFAULT_LEVEL): { maskS: number; maskL: number; bits: number } {
  const { min, avg, max } = params;
  for (const [name, v] of [
    ['min', min],
    ['avg', avg],
    ['max', max],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`chunking ${name} must be a positive integer, got ${v}`);
  }
  if (!(min <= avg && avg <= max)) throw new RangeError(`chunking params must satisfy min <= avg <= max, got ${min}/${avg}/${max}`);
  if (!Number.isInteger(level) || level < 0 || level > 3) throw new RangeError(`normalization level must be 0..3, got ${level}`);
  const bits = Math.round(Math.log2(avg));
  const sBits = bits + level;
  const lBits = bits - level;
  if (lBits < 1 || sBits > 31) throw new RangeError(`chunking avg ${avg} out of range for level ${level}`);
  return { maskS: topMask(sBits), maskL: topMask(lBits), bits };
}

/**
 * Streaming FastCDC cutter. Feed the stream with `push` in pieces of any size; each call returns
 * the chunk END offsets (absolute, from the start of the stream) completed by that piece; `finish`
 * returns the end of the last, partial chunk if there is one. Holds no data, only the position in
 * the current chunk and the rolling hash, so memory is constant.
 */
export class FastCdcCutter {
  private readonly min: number;
  private readonly avg: number;
  private readonly max: number;
  private readonly maskS: number;
  private readonly maskL: number;
  /** Absolute offset of the first byte of the current chunk. */
  private chunkStart = 0;
  /** Bytes of the current chunk seen so far. */
  private len = 0;
  private hash = 0;
  private finished = false;

  constructor(params: ChunkingParams = DEFAULT_CHUNKING, opts: CutterOptions = {}) {
    const { maskS, maskL } = chunkingMasks(params, opts.level ?? DEFAULT_LEVEL);
    this.min = params.min;
    this.avg = params.avg;
    this.max = params.max;
    this.maskS = maskS;
    this.maskL = maskL;
  }

  /** Total bytes pushed so far. */
  get position(): number {
    return this.chunkStart + this.len;
  }

  /** Feed the next bytes of the stream; returns the absolute end offsets of the chunks they complete. */
  push(data: Uint8Array, out: number[] = []): number[] {
    if (this.finished) throw new Error('FastCdcCutter: push after finish');
    const n = data.length;
    const { min, avg, max, maskS, maskL } = this;
    const gear = GEAR;
    let len = this.len;
    let h = this.hash;
    let i = 0;
    // `base + i` is the absolute offset of data[i].
    const base = this.chunkStart + len;
    let chunkStart = this.chunkStart;
    while (i < n) {
      if (len < min) {
        // Cut-point skipping: the first `min` bytes of a chunk are not hashed.
        const skip = Math.min(min - len, n - i);
        i += skip;
        len += skip;
        h = 0;
        if (len < min) break;
      }
      let cut = -1; // index in data of the byte after which to cut
      if (len < avg) {
        const end = Math.min(n, i + (avg - len));
        let j = i;
        for (; j < end; j++) {
          h = ((h << 1) + gear[data[j]!]!) | 0;
          if ((h & maskS) === 0) break;
        }
        if (j < end) {
          cut = j;
        } else {
          len += end - i;
          i = end;
        }
      }
      if (cut < 0 && len >= avg && i < n) {
        const end = Math.min(n, i + (max - len));
        let j = i;
        for (; j < end; j++) {
          h = ((h << 1) + gear[data[j]!]!) | 0;
          if ((h & maskL) === 0) break;
        }
        if (j < end) {
          cut = j;
        } else {
          len += end - i;
          i = end;
        }
      }
      if (cut >= 0) {
        i = cut + 1;
        chunkStart = base + i;
        out.push(chunkStart);
        len = 0;
        h = 0;
      } else if (len >= max) {
        chunkStart = base + i;
        out.push(chunkStart);
        len = 0;
        h = 0;
      }
    }
    this.chunkStart = chunkStart;
    this.len = len;
    this.hash = h;
    return out;
  }

  /** End of stream: returns the end offset of the last chunk, or null if there is none. */
  finish(): number | null {
    if (this.finished) return null;
    this.finished = true;
    if (this.len === 0) return null;
    const end = this.chunkStart + this.len;
    this.chunkStart = end;
    this.len = 0;
    return end;
  }
}

/** Chunk lengths of a whole buffer (convenience for tests and small data). */
export function chunkLengths(data: Uint8Array, params: ChunkingParams = DEFAULT_CHUNKING, opts?: CutterOptions): number[] {
  const cutter = new FastCdcCutter(params, opts);
  const ends = cutter.push(data);
  const last = cutter.finish();
  if (last !== null) ends.push(last);
  const lengths: number[] = [];
  let prev = 0;
  for (const e of ends) {
    lengths.push(e - prev);
    prev = e;
  }
  return lengths;
}
