import fs from 'node:fs/promises';
import { blockPath, blocksRoot } from '../../cache/layout.js';

/** Damage to a mount's cached block files done behind its back (a failing disk, a stray write). */

/** The file of block `hash` in the block cache of the cache folder `cacheDir`. */
export function cachedBlockFile(cacheDir: string, hash: string): string {
  return blockPath(blocksRoot(cacheDir), hash);
}

/**
 * 'flip': inverts every bit of the byte in the middle of the file (same size, wrong bytes);
 * 'truncate': cuts the file to half its size.
 */
export async function damageFile(file: string, how: 'flip' | 'truncate'): Promise<void> {
  const { size } = await fs.stat(file);
  if (how === 'truncate') return fs.truncate(file, Math.floor(size / 2));
  const fh = await fs.open(file, 'r+');
  try {
    const at = Math.floor(size / 2);
    const one = Buffer.alloc(1);
    await fh.read(one, 0, 1, at);
    one[0] = one[0]! ^ 0xff;
    await fh.write(one, 0, 1, at);
  } finally {
    await fh.close();
  }
}
