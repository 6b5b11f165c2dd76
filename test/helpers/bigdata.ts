import { createCipheriv, createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';

/**
 * Big test files without holding them in memory: a pseudo-random byte stream (AES-128-CTR over
 * zeros, ~GB/s, never repeats, so it does not dedup against itself) and streaming sha256.
 */

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

const CHUNK = 8 * MiB;

/** The pseudo-random stream of `seed`: byte i is always the same for the same seed. */
export function prng(seed: string): (n: number) => Buffer {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(CHUNK);
  return (n) => {
    const parts: Buffer[] = [];
    for (let left = n; left > 0; left -= CHUNK) parts.push(cipher.update(zeros.subarray(0, Math.min(CHUNK, left))));
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  };
}

/** Writes `size` pseudo-random bytes of `seed` to `file`; resolves with their sha256 (hex). */
export async function writeRandomFile(file: string, size: number, seed: string): Promise<string> {
  const next = prng(seed);
  const hash = createHash('sha256');
  const fh = await fs.open(file, 'w');
  try {
    for (let left = size; left > 0; ) {
      const bytes = next(Math.min(CHUNK, left));
      hash.update(bytes);
      for (let done = 0; done < bytes.length; ) done += (await fh.write(bytes, done, bytes.length - done)).bytesWritten;
      left -= bytes.length;
    }
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
}

/** sha256 (hex) of a file or of bytes [start, end) of it, streamed; also the byte count read. */
export async function sha256File(file: string, range: { start?: number; end?: number } = {}): Promise<{ hash: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  const stream = createReadStream(file, {
    highWaterMark: 4 * MiB,
    ...(range.start !== undefined && { start: range.start }),
    ...(range.end !== undefined && { end: range.end - 1 }),
  });
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { hash: hash.digest('hex'), bytes };
}

/** Reads exactly `length` bytes at `position` (fewer only at the end of the file). */
export async function readAt(file: string, position: number, length: number): Promise<Buffer> {
  const fh = await fs.open(file, 'r');
  try {
    const buf = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await fh.read(buf, done, length - done, position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return buf.subarray(0, done);
  } finally {
    await fh.close();
  }
}

/** Writes `bytes` at `position` of an existing file without truncating it (like dd conv=notrunc). */
export async function writeAt(file: string, position: number, bytes: Buffer): Promise<void> {
  const fh = await fs.open(file, 'r+');
  try {
    for (let done = 0; done < bytes.length; ) done += (await fh.write(bytes, done, bytes.length - done, position + done)).bytesWritten;
  } finally {
    await fh.close();
  }
}

/** Polls `check` (async) every `everyMs` until it returns a value other than undefined; throws after `timeoutMs`. */
export async function pollUntil<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
