/**
 * FastCDC content-defined chunking (Xia et al., "The Design of Fast Content-Defined Chunking for
 * Data Deduplication Based Storage Systems", IEEE TPDS 2020), as a pure streaming cutter.
 *
 * The algorithm, exactly (this IS the contract between all clients of a server):
 * - Gear rolling hash on 32 bits: `h = (h << 1) + GEAR[byte]  (mod 2^32)`. Bit k of `h` depends on
 *   the last k + 1 bytes only, so the masks take the TOP bits (bit 31 sees a 32-byte window).
 * - Cut-point skipping: the first `min` bytes of a chunk are not hashed; `h` is 0 before the byte
 *   at offset `min` of the chunk.
 * - Normalized chunking, level L (DEFAULT_LEVEL = 2, NC-2 in the paper), bits = round(log2(avg)):
 *   bytes at chunk offsets [min, avg) are tested with maskS = top (bits + L) bits, bytes at
 *   [avg, max) with maskL = top (bits - L) bits. The first byte whose `h & mask` is 0 ends the
 *   chunk (the cut is AFTER that byte). A chunk that reaches `max` bytes is cut there.
 * - At the end of the stream the remainder is the last chunk, so only the last chunk may be
 *   shorter than `min`; a stream shorter than `min` is one chunk; an empty stream has none.
 *
 * GEAR, the mask layout and DEFAULT_LEVEL are fixed constants: changing any of them changes the
 * block ids of every file. test/mount/chunker.test.ts pins them with golden values.
 *
 * Two engines compute the same cut points: a scalar WebAssembly kernel (default, ~2.5x faster
 * than V8's code for the same loop on the build machine, on par with gcc -O2) and a plain
 * TypeScript loop (reference and fallback). The kernel is a ~300-byte module assembled below from a
 * listing, so there is no binary blob and no build step.
 */
import type { ChunkingParams } from '../../protocol/types.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;

/** DESIGN §2 defaults; the real values come from the server's `GET /v1/config`. */
export const DEFAULT_CHUNKING: Readonly<ChunkingParams> = Object.freeze({ min: 256 * KiB, avg: 1 * MiB, max: 4 * MiB });

/** Normalization level used by Stratus (NC-2 in the paper). Part of the cutting contract. */
export const DEFAULT_LEVEL = 2;

/** Seed of the GEAR table PRNG: ASCII "STRA". Part of the cutting contract. */
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

/** `n` one-bits at the top of a 32-bit word, as int32 (n in 1..31). */
function topMask(n: number): number {
  return (~0 << (32 - n)) | 0;
}

export type CdcEngine = 'wasm' | 'js';

export interface CutterOptions {
  /** Normalization level 0..3; defaults to DEFAULT_LEVEL. Only for experiments: clients must agree. */
  level?: number;
  /** Defaults to 'wasm' when WebAssembly is available. Both engines cut identically. */
  engine?: CdcEngine;
}

/** Validates the params (throws RangeError) and returns the two masks. */
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

// ---------------------------------------------------------------------------------------------
// Scan kernels. Both: advance the gear hash over data[from..to) starting from the kernel's
// current hash; return the index of the first byte after which `(h & mask) === 0`, or -1 if
// there is none in range. The kernel's hash is left at the value after the last byte hashed.
// ---------------------------------------------------------------------------------------------

/** Hash state of the JS kernel (one cutter runs at a time per thread: push is synchronous). */
let jsHash = 0;

function scanJs(data: Uint8Array, from: number, to: number, mask: number): number {
  const gear = GEAR;
  let h = jsHash;
  for (let j = from; j < to; j++) {
    h = ((h << 1) + gear[data[j]!]!) | 0;
    if ((h & mask) === 0) {
      jsHash = h;
      return j;
    }
  }
  jsHash = h;
  return -1;
}

/** Memory layout of the wasm kernel: GEAR at 0 (1 KiB), then the data window. */
const WASM_DATA = 1024;
/** Bytes copied into wasm memory per kernel pass. */
const WASM_WINDOW = 1 * MiB;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

/**
 * Assembles the kernel module. Equivalent WAT:
 *
 *   (memory (export "mem") 17)                 ;; GEAR at 0, data window at 1024
 *   (global $h (export "h") (mut i32) (i32.const 0))
 *   (func (export "scan") (param $p i32) (param $end i32) (param $mask i32) (result i32)
 *     (local $h i32) (local $end4 i32)
 *     (local.set $h (global.get $h))
 *     (local.set $end4 (i32.sub (local.get $end) (i32.const 3)))
 *     (block $done4 (loop $l4                  ;; 4 bytes per iteration while p + 4 <= end
 *       (br_if $done4 (i32.ge_u (local.get $p) (local.get $end4)))
 *       STEP(0) STEP(1) STEP(2) STEP(3)
 *       (local.set $p (i32.add (local.get $p) (i32.const 4)))
 *       (br $l4)))
 *     (block $done1 (loop $l1                  ;; the 0..3 remaining bytes
 *       (br_if $done1 (i32.ge_u (local.get $p) (local.get $end)))
 *       STEP(0)
 *       (local.set $p (i32.add (local.get $p) (i32.const 1)))
 *       (br $l1)))
 *     (global.set $h (local.get $h))
 *     (i32.const -1))
 *
 *   STEP(k) = (local.set $h (i32.add (i32.shl (local.get $h) (i32.const 1))
 *                 (i32.load (i32.shl (i32.load8_u offset=k (local.get $p)) (i32.const 2)))))
 *             (if (i32.eqz (i32.and (local.get $h) (local.get $mask)))
 *               (then (global.set $h (local.get $h)) (return (i32.add (local.get $p) (i32.const k)))))
 */
function assembleScanModule(): Uint8Array<ArrayBuffer> {
  const I32 = 0x7f;
  const P = 0;
  const END = 1;
  const MASK = 2;
  const H = 3;
  const END4 = 4;
  const get = (i: number) => [0x20, i];
  const set = (i: number) => [0x21, i];
  const tee = (i: number) => [0x22, i];
  const i32 = (n: number) => [0x41, ...sleb(n)];
  const [ADD, SUB, AND, SHL, EQZ, GE_U] = [0x6a, 0x6b, 0x71, 0x74, 0x45, 0x4f];
  const [BLOCK, LOOP, IF, END_, BR, BR_IF, RETURN, VOID] = [0x02, 0x03, 0x04, 0x0b, 0x0c, 0x0d, 0x0f, 0x40];
  const [GLOBAL_GET, GLOBAL_SET, LOAD, LOAD8_U] = [0x23, 0x24, 0x28, 0x2d];
  const step = (k: number) => [
    ...get(H), ...i32(1), SHL,
    ...get(P), LOAD8_U, 0, ...uleb(k), ...i32(2), SHL, LOAD, 2, 0,
    ADD, ...tee(H),
    ...get(MASK), AND, EQZ, IF, VOID,
    ...get(H), GLOBAL_SET, 0, ...get(P), ...i32(k), ADD, RETURN,
    END_,
  ];
  const loop = (limit: number, stride: number, steps: number[]) => [
    BLOCK, VOID, LOOP, VOID,
    ...get(P), ...get(limit), GE_U, BR_IF, 1,
    ...steps,
    ...get(P), ...i32(stride), ADD, ...set(P),
    BR, 0, END_, END_,
  ];
  const code = [
    GLOBAL_GET, 0, ...set(H),
    ...get(END), ...i32(3), SUB, ...set(END4),
    ...loop(END4, 4, [...step(0), ...step(1), ...step(2), ...step(3)]),
    ...loop(END, 1, step(0)),
    ...get(H), GLOBAL_SET, 0, ...i32(-1),
    END_,
  ];
  const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];
  const section = (id: number, bytes: number[]) => [id, ...uleb(bytes.length), ...bytes];
  const name = (s: string) => [...uleb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];
  const body = [...vec([[2, I32]]), ...code];
  const pages = Math.ceil((WASM_DATA + WASM_WINDOW) / 65536);
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([[0x60, ...vec([[I32], [I32], [I32]]), ...vec([[I32]])]])), // type: (i32 i32 i32) -> i32
    ...section(3, vec([[0]])), // function 0 has type 0
    ...section(5, vec([[0x00, ...uleb(pages)]])), // memory: min pages, no max
    ...section(6, vec([[I32, 1, ...i32(0), END_]])), // global 0: mut i32 = 0
    ...section(7, vec([[...name('scan'), 0x00, 0], [...name('mem'), 0x02, 0], [...name('h'), 0x03, 0]])),
    ...section(10, vec([[...uleb(body.length), ...body]])),
  ]);
}

interface WasmKernel {
  scan: (p: number, end: number, mask: number) => number;
  h: WebAssembly.Global;
  /** The data window (WASM_WINDOW bytes at WASM_DATA); never detached (the memory never grows). */
  window: Uint8Array;
}

/** One kernel instance per thread, created on first use. */
let wasmKernel: WasmKernel | null | undefined;

function getWasmKernel(): WasmKernel | null {
  if (wasmKernel !== undefined) return wasmKernel;
  try {
    const instance = new WebAssembly.Instance(new WebAssembly.Module(assembleScanModule()));
    const exports = instance.exports as { scan: WasmKernel['scan']; mem: WebAssembly.Memory; h: WebAssembly.Global };
    const view = new DataView(exports.mem.buffer);
    for (let i = 0; i < 256; i++) view.setInt32(i * 4, GEAR[i]!, true); // wasm memory is little-endian
    wasmKernel = { scan: exports.scan, h: exports.h, window: new Uint8Array(exports.mem.buffer, WASM_DATA, WASM_WINDOW) };
  } catch {
    wasmKernel = null;
  }
  return wasmKernel;
}

/** The engine used when none is asked for. */
export function defaultEngine(): CdcEngine {
  return getWasmKernel() ? 'wasm' : 'js';
}

/**
 * Streaming FastCDC cutter. Feed the stream with `push` in pieces of any size; each call returns
 * the chunk END offsets (absolute, from the start of the stream) completed by that piece; `finish`
 * returns the end of the last, partial chunk if there is one. Holds no data, only the position in
 * the current chunk and the rolling hash, so its memory is constant.
 */
export class FastCdcCutter {
  readonly engine: CdcEngine;
  private readonly min: number;
  private readonly avg: number;
  private readonly max: number;
  private readonly maskS: number;
  private readonly maskL: number;
  private readonly kernel: WasmKernel | null;
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
    const engine = opts.engine ?? defaultEngine();
    this.kernel = engine === 'wasm' ? getWasmKernel() : null;
    if (engine === 'wasm' && !this.kernel) throw new Error('FastCdcCutter: WebAssembly is not available');
    this.engine = engine;
  }

  /** Total bytes pushed so far. */
  get position(): number {
    return this.chunkStart + this.len;
  }

  /** Feeds the next bytes of the stream; returns the absolute end offsets of the chunks they complete. */
  push(data: Uint8Array, out: number[] = []): number[] {
    if (this.finished) throw new Error('FastCdcCutter: push after finish');
    const kernel = this.kernel;
    if (!kernel) {
      this.cut(data, data.length, out);
      return out;
    }
    for (let off = 0; off < data.length; off += WASM_WINDOW) {
      const n = Math.min(WASM_WINDOW, data.length - off);
      // Bytes in the skipped first `min` bytes of the current chunk are never read: no copy.
      const skip = Math.min(n, Math.max(0, this.min - this.len));
      if (skip < n) kernel.window.set(data.subarray(off + skip, off + n), skip);
      this.cut(kernel.window, n, out);
    }
    return out;
  }

  /** Cuts data[0..n), the next n bytes of the stream (for the wasm engine, data is the window). */
  private cut(data: Uint8Array, n: number, out: number[]): void {
    const { min, avg, max, maskS, maskL, kernel } = this;
    let len = this.len;
    let i = 0;
    // `base + i` is the absolute offset of data[i].
    const base = this.chunkStart + len;
    let chunkStart = this.chunkStart;
    this.setHash(this.hash);
    while (i < n) {
      if (len < min) {
        // Cut-point skipping: the first `min` bytes of a chunk are not hashed.
        const skip = Math.min(min - len, n - i);
        i += skip;
        len += skip;
        if (len < min) break;
        this.setHash(0);
      }
      let found = -1; // index in data of the byte after which to cut
      if (len < avg) {
        const end = Math.min(n, i + (avg - len));
        found = kernel ? kernel.scan(WASM_DATA + i, WASM_DATA + end, maskS) : scanJs(data, i, end, maskS);
        if (found >= 0 && kernel) found -= WASM_DATA;
        if (found < 0) {
          len += end - i;
          i = end;
        }
      }
      if (found < 0 && len >= avg && i < n) {
        const end = Math.min(n, i + (max - len));
        found = kernel ? kernel.scan(WASM_DATA + i, WASM_DATA + end, maskL) : scanJs(data, i, end, maskL);
        if (found >= 0 && kernel) found -= WASM_DATA;
        if (found < 0) {
          len += end - i;
          i = end;
        }
      }
      if (found >= 0) {
        i = found + 1;
      } else if (len < max) {
        continue; // ran out of data (i === n): the loop ends
      }
      chunkStart = base + i;
      out.push(chunkStart);
      len = 0;
    }
    this.chunkStart = chunkStart;
    this.len = len;
    this.hash = this.getHash();
  }

  private setHash(h: number): void {
    if (this.kernel) this.kernel.h.value = h;
    else jsHash = h;
  }

  private getHash(): number {
    return this.kernel ? (this.kernel.h.value as number) : jsHash;
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
