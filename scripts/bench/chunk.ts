import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chunkLengths, DEFAULT_CHUNKING } from '../../mount/chunker/fastcdc.js';
import { ChunkerPool } from '../../mount/chunker/pool.js';

const MiB = 1024 * 1024;

export interface ChunkBenchResult {
  /** chunk + hash of one file through a one-worker pool (MiB/s). */
  mbPerSec1: number;
  /** aggregate chunk + hash, `threads` files at once through a `threads`-worker pool (MiB/s). */
  mbPerSecPool: number;
  /** worker count of the mbPerSecPool row: one per core. */
  threads: number;
  /** FastCDC cutting alone, in-process, one core (MiB/s). */
  cutMbPerSec: number;
  fileMiB: number;
}

async function seconds(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/**
 * Chunk + BLAKE3 throughput of a `fileMiB` (default 512) random temp file (page cache, default 256K/1M/4M params)
 * through the ChunkerPool: one worker on one file, then one worker per core on as many concurrent
 * chunkFile calls (one file is cut sequentially: parallelism is across files). Each figure is the
 * best of `rounds` after a warm-up run.
 */
export async function benchChunking({ fileMiB = 512, rounds = 3 }: { fileMiB?: number; rounds?: number } = {}): Promise<ChunkBenchResult> {
  const bytes = fileMiB * MiB;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-bench-chunk-'));
  const file = path.join(dir, 'chunk-src.bin');
  try {
    const fh = await fs.open(file, 'w');
    try {
      for (let done = 0; done < bytes; done += 16 * MiB) await fh.write(crypto.randomBytes(Math.min(16 * MiB, bytes - done)));
    } finally {
      await fh.close();
    }

    const sample = crypto.randomBytes(Math.min(bytes, 128 * MiB));
    let cutBest = Infinity;
    for (let i = 0; i <= rounds; i++) {
      const s = await seconds(async () => chunkLengths(sample, DEFAULT_CHUNKING));
      if (i > 0) cutBest = Math.min(cutBest, s);
    }

    const one = new ChunkerPool({ threads: 1 });
    let oneBest = Infinity;
    try {
      for (let i = 0; i <= rounds; i++) {
        const s = await seconds(() => one.chunkFile(file, DEFAULT_CHUNKING));
        if (i > 0) oneBest = Math.min(oneBest, s);
      }
    } finally {
      await one.close();
    }

    const threads = Math.max(1, os.availableParallelism());
    const many = new ChunkerPool({ threads });
    let manyBest = Infinity;
    try {
      for (let i = 0; i <= rounds; i++) {
        const s = await seconds(() => Promise.all(Array.from({ length: threads }, () => many.chunkFile(file, DEFAULT_CHUNKING))));
        if (i > 0) manyBest = Math.min(manyBest, s);
      }
    } finally {
      await many.close();
    }

    return {
      mbPerSec1: bytes / MiB / oneBest,
      mbPerSecPool: (threads * bytes) / MiB / manyBest,
      threads,
      cutMbPerSec: sample.length / MiB / cutBest,
      fileMiB,
    };
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}
