import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import { ChunkerPool } from '../../mount/chunker/pool.js';
import type { StratusClient } from '../../protocol/client.js';
import type { BlockRef, NodeInfo, ServerConfig } from '../../protocol/types.js';

/** Small helpers the bench groups share: shell tools, timing, polling, test files, API uploads. */

export const MiB = 1024 * 1024;

/**
 * Runs a command with its output thrown away (stdout to /dev/null); resolves with its stderr.
 * Rejects on a non-zero exit unless `tolerate(stderr)` says that failure is expected.
 */
export function runQuiet(cmd: string, args: string[], opts: { cwd?: string; input?: Buffer; tolerate?: (stderr: string) => boolean } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, stdio: [opts.input ? 'pipe' : 'ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c.slice(0, 64_000 - err.length)));
    child.stdin?.end(opts.input);
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (code === 0 || (code !== null && opts.tolerate?.(err))) resolve(err);
      else reject(new Error(`${cmd} ${args.join(' ')}: exit ${code ?? signal}: ${err.slice(0, 4000)}`));
    });
  });
}

export async function seconds(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** fn(0) … fn(count - 1), `inflight` at a time. */
export async function parallel(count: number, inflight: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(inflight, count) }, async () => {
      while (next < count) await fn(next++);
    }),
  );
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Calls `check` every `everyMs` until it gives something other than undefined, and resolves with
 * that; rejects after `timeoutMs` with "timed out … waiting for WHAT" (and `why()`, if given).
 */
export async function pollUntil<T>(check: () => Promise<T | undefined>, o: { timeoutMs: number; everyMs: number; what: string; why?: () => string }): Promise<T> {
  const deadline = performance.now() + o.timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${o.timeoutMs} ms waiting for ${o.what}${o.why ? ` (${o.why()})` : ''}`);
    await sleep(o.everyMs);
  }
}

export async function exists(p: string): Promise<boolean> {
  return fs.stat(p).then(
    () => true,
    () => false,
  );
}

export function fmtSize(bytes: number): string {
  return bytes >= 1024 * MiB && bytes % (1024 * MiB) === 0 ? `${bytes / 1024 / MiB} GiB` : `${+(bytes / MiB).toFixed(1)} MiB`;
}

export async function writeRandomFile(file: string, size: number): Promise<void> {
  const fh = await fs.open(file, 'w');
  try {
    for (let done = 0; done < size; done += 16 * MiB) await fh.write(crypto.randomBytes(Math.min(16 * MiB, size - done)));
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** A user's session on the server, as far as putting files into its root goes. */
export interface RootApi {
  client: StratusClient;
  root: NodeInfo;
  config: ServerConfig;
}

/** Chunks a local file as the server wants, uploads its blocks (4 in flight) and commits it as `name` in the root. */
export async function uploadFile(api: RootApi, local: string, name: string): Promise<void> {
  const pool = new ChunkerPool({ threads: 1 });
  const chunks = await pool.chunkFile(local, api.config.chunking).finally(() => pool.close());
  const fh = await fs.open(local, 'r');
  try {
    await parallel(chunks.length, 4, async (i) => {
      const c = chunks[i]!;
      const bytes = Buffer.alloc(c.size);
      await fh.read(bytes, 0, c.size, c.offset);
      await api.client.putBlock(c.hash, bytes);
    });
  } finally {
    await fh.close();
  }
  await commitFile(api, name, chunks.map(({ hash, size }) => ({ hash, size })));
}

export async function commitFile(api: RootApi, name: string, blocks: BlockRef[]): Promise<void> {
  const node = await api.client.create({ parent_id: api.root.id, name, kind: 'file' });
  await api.client.commit(node.id, { base_version: 0, blocks, size: blocks.reduce((a, x) => a + x.size, 0) });
}
