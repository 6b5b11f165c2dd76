import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { isBlockHash } from '../protocol/hash.js';

/**
 * Where the block cache keeps its files: `<dir>/blocks/ab/cd/<hash>`, fanned out by the first
 * 2 + 2 hex digits, and a block being written as `.<hash>.<random>.tmp` beside its final name, so
 * the rename that publishes it never crosses a folder.
 */

const FANOUT_RE = /^[0-9a-f]{2}$/;
const TEMP_RE = /^\.[0-9a-f]{64}\.[0-9a-f]+\.tmp$/;

export function blocksRoot(dir: string): string {
  return path.join(dir, 'blocks');
}

/** The final file of a block; `hash` must already be validated. */
export function blockPath(root: string, hash: string): string {
  return path.join(root, hash.slice(0, 2), hash.slice(2, 4), hash);
}

/** A fresh temp name beside the block's final file. */
export function tempPath(root: string, hash: string): string {
  return path.join(root, hash.slice(0, 2), hash.slice(2, 4), `.${hash}.${crypto.randomBytes(6).toString('hex')}.tmp`);
}

export interface ScannedBlock {
  hash: string;
  size: number;
  /** When the block was last written or read, as far as the file times tell (ms). */
  usedMs: number;
}

/**
 * Every block file under `root`, deleting leftover temp files (a put cut short by a crash) on the
 * way. Files that are neither a block in its right folder nor a temp file are left alone.
 */
export async function scanBlocks(root: string): Promise<ScannedBlock[]> {
  const found: ScannedBlock[] = [];
  for (const a of await readdirOrEmpty(root)) {
    if (!FANOUT_RE.test(a)) continue;
    for (const b of await readdirOrEmpty(path.join(root, a))) {
      if (!FANOUT_RE.test(b)) continue;
      const folder = path.join(root, a, b);
      const names = await readdirOrEmpty(folder);
      await Promise.all(
        names.map(async (name) => {
          const file = path.join(folder, name);
          if (TEMP_RE.test(name)) {
            await fsp.rm(file, { force: true });
            return;
          }
          if (!isBlockHash(name) || name.slice(0, 2) !== a || name.slice(2, 4) !== b) return;
          const st = await fsp.stat(file).catch(() => undefined);
          if (!st?.isFile()) return;
          found.push({ hash: name, size: st.size, usedMs: Math.max(st.atimeMs, st.mtimeMs) });
        }),
      );
    }
  }
  return found;
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await fsp.readdir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return [];
    throw err;
  }
}
