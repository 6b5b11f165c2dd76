import path from 'node:path';
import type { BlockStore } from './blockstore.js';
import { DiskBlockStore } from './disk.js';

/**
 * The block store for a `--blocks` URL: `gs://BUCKET[/prefix]` (Google Cloud Storage), `file:DIR`
 * or a plain path; `DATA/blocks` when none is given.
 */
export async function openBlockStore(blocksUrl: string | undefined, dataDir: string): Promise<BlockStore> {
  if (!blocksUrl) return DiskBlockStore.open(path.join(dataDir, 'blocks'));
  if (blocksUrl.startsWith('gs://')) {
    // Loaded only when used: the client library is large.
    const { GcsBlockStore } = await import('./gcs.js');
    return GcsBlockStore.open(blocksUrl);
  }
  const dir = blocksUrl.startsWith('file:') ? blocksUrl.replace(/^file:(\/\/)?/, '') : blocksUrl;
  return DiskBlockStore.open(dir);
}
