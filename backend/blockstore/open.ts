import path from 'node:path';
import type { BlockStore } from './blockstore.js';
import { DiskBlockStore } from './disk.js';

/** The block store for a `--blocks` URL (`file:DIR` or a plain path), or `DATA/blocks` when none is given. */
export async function openBlockStore(blocksUrl: string | undefined, dataDir: string): Promise<BlockStore> {
  if (!blocksUrl) return DiskBlockStore.open(path.join(dataDir, 'blocks'));
  if (blocksUrl.startsWith('gs://')) {
    throw new Error('--blocks gs://… (Google Cloud Storage) is not available in this build yet; use a local folder');
  }
  const dir = blocksUrl.startsWith('file:') ? blocksUrl.replace(/^file:(\/\/)?/, '') : blocksUrl;
  return DiskBlockStore.open(dir);
}
