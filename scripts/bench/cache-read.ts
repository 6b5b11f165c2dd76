import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { BlockCache } from '../../cache/block-cache.js';
import { blockPath, blocksRoot } from '../../cache/layout.js';
import { ChunkerPool } from '../../mount/chunker/pool.js';
import { BlockSource } from '../../mount/blocks/block-source.js';
import { blake3Hex } from '../../protocol/hash.js';
import type { StratusClient } from '../../protocol/client.js';

/**
 * Micro-measurement of the drive's cached-read path (not a group of `npm run bench`: it times
 * microseconds on one core, no mount, no server):
 *
 *   node dist/scripts/bench/cache-read.js [blocks=64] [rounds=7]
 *
 * - hot: a 128 KiB read (the kernel's FUSE request size) of a block verified in this process,
 *   through BlockSource.readInto and through BlockCache.readSync, next to a bare fs.readSync of
 *   the same bytes on a kept descriptor (the floor). Best of `rounds`, µs per read.
 * - first use: the first 128 KiB read of each block after the cache was reopened (blocks found
 *   on disk are not trusted before they are hashed): the whole block is read (async) and hashed in
 *   the chunker pool. Latency per block, the main thread's CPU time per block (what the other FUSE
 *   callbacks wait for; from /proc/self/task/PID/schedstat, so a busy machine does not inflate it),
 *   and the longest event-loop delay seen. `rounds` reopen cycles.
 *
 * Block files are in the page cache (just written): this is CPU cost, not disk speed.
 */

const KiB = 1024;
const MiB = 1024 * KiB;
const REQUEST = 128 * KiB;

export interface CacheReadResult {
  blocks: number;
  rounds: number;
  /** µs per 128 KiB read, best round. */
  hot: { readInto: number; readSync: number; bareReadSync: number };
  /** Per block on first use after a reopen: latency (µs, best round), main-thread CPU (µs, mean; NaN without /proc), longest loop delay seen (ms). */
  firstUse: { latencyUs: number; mainCpuUs: number; maxLoopDelayMs: number };
}

/** CPU time of the main thread so far (ns), or NaN where /proc has no schedstat. */
function mainThreadCpuNs(): number {
  try {
    return Number(fs.readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    return NaN;
  }
}

const noServer = {
  getBlock: () => Promise.reject(new Error('the cache-read bench never fetches')),
} as unknown as StratusClient;

function bestUsPerOp(rounds: number, ops: number, fn: () => void): number {
  let best = Infinity;
  for (let r = 0; r < rounds; r++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < ops; i++) fn();
    best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e3 / ops);
  }
  return best;
}

async function bestUsPerOpAsync(rounds: number, ops: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  let best = Infinity;
  for (let r = 0; r < rounds; r++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < ops; i++) await fn(i);
    best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e3 / ops);
  }
  return best;
}

export async function benchCacheRead({ blocks = 64, rounds = 7 }: { blocks?: number; rounds?: number } = {}): Promise<CacheReadResult> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'stratus-bench-cache-read-'));
  const pool = new ChunkerPool({ threads: 1 });
  try {
    await pool.warm();
    const list = Array.from({ length: blocks }, () => {
      const bytes = crypto.randomBytes(MiB);
      return { bytes, hash: blake3Hex(bytes) };
    });
    let cache = await BlockCache.open({ dir, maxBytes: (blocks + 1) * MiB });
    for (const b of list) await cache.put(b.hash, b.bytes);
    let source = new BlockSource(noServer, cache, pool);
    const target = Buffer.alloc(REQUEST);
    const perBlock = MiB / REQUEST;
    const ops = blocks * perBlock;
    const at = (i: number) => ({ b: list[Math.floor(i / perBlock) % blocks]!, off: (i % perBlock) * REQUEST });

    // Hot path (every block was put, so verified).
    const readInto = await bestUsPerOpAsync(rounds, ops, (i) => {
      const { b, off } = at(i);
      return source.readInto(b.hash, MiB, target, 0, off, REQUEST);
    });
    let k = 0;
    const readSync = bestUsPerOp(rounds, ops, () => {
      const { b, off } = at(k++);
      if (cache.readSync(b.hash, target, 0, REQUEST, off) !== REQUEST) throw new Error('hot read missed');
    });
    const fds = list.map((b) => fs.openSync(blockPath(blocksRoot(dir), b.hash), 'r'));
    k = 0;
    const bareReadSync = bestUsPerOp(rounds, ops, () => {
      const i = k++;
      fs.readSync(fds[Math.floor(i / perBlock) % blocks]!, target, 0, REQUEST, (i % perBlock) * REQUEST);
    });
    for (const fd of fds) fs.closeSync(fd);

    // First use after a reopen: every block is checked once.
    const delay = monitorEventLoopDelay({ resolution: 1 });
    let latencyUs = Infinity;
    let cpuNs = 0;
    for (let r = 0; r < rounds; r++) {
      await cache.close();
      cache = await BlockCache.open({ dir, maxBytes: (blocks + 1) * MiB });
      source = new BlockSource(noServer, cache, pool);
      delay.enable();
      const cpu = mainThreadCpuNs();
      const start = process.hrtime.bigint();
      for (const b of list) {
        if ((await source.readInto(b.hash, MiB, target, 0, 0, REQUEST)) !== REQUEST) throw new Error('first read failed');
      }
      latencyUs = Math.min(latencyUs, Number(process.hrtime.bigint() - start) / 1e3 / blocks);
      cpuNs += mainThreadCpuNs() - cpu;
      delay.disable();
      if (source.stats.cacheChecks !== blocks || source.stats.cacheCorrupt !== 0) throw new Error(`unexpected checks: ${JSON.stringify(source.stats)}`);
    }
    await cache.close();
    return {
      blocks,
      rounds,
      hot: { readInto, readSync, bareReadSync },
      firstUse: { latencyUs, mainCpuUs: cpuNs / 1e3 / (rounds * blocks), maxLoopDelayMs: delay.max / 1e6 },
    };
  } finally {
    await pool.close();
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [blocks, rounds] = process.argv.slice(2).map(Number);
  const r = await benchCacheRead({ blocks: blocks || undefined, rounds: rounds || undefined });
  const f = (n: number) => n.toFixed(1);
  console.log(`cached reads, ${r.blocks} blocks of 1 MiB, 128 KiB requests, best of ${r.rounds} (load ${os.loadavg()[0]!.toFixed(2)} on ${os.availableParallelism()} cores)`);
  console.log(`hot   BlockSource.readInto  ${f(r.hot.readInto)} µs/read`);
  console.log(`hot   BlockCache.readSync   ${f(r.hot.readSync)} µs/read`);
  console.log(`hot   bare fs.readSync      ${f(r.hot.bareReadSync)} µs/read`);
  console.log(`first use (read 1 MiB + BLAKE3 in the pool): ${f(r.firstUse.latencyUs)} µs/block latency, ${f(r.firstUse.mainCpuUs)} µs/block of main-thread CPU, longest loop delay ${r.firstUse.maxLoopDelayMs.toFixed(2)} ms`);
}
