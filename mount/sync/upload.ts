import { open } from 'node:fs/promises';
import type { BlockRef } from '../../protocol/types.js';
import type { SendContext } from './send-context.js';

/**
 * Uploads the blocks of a staging file the server lacks: asks which of them are missing (in
 * batches the server takes), then reads and puts only those, a few at once. Stops early when
 * `cancelled` turns true. Uploaded blocks stay in the cache: what was just written is likely read next.
 */
export async function uploadMissing(ctx: SendContext, staging: string, blocks: (BlockRef & { offset: number })[], cancelled: () => boolean): Promise<void> {
  const { client, config } = ctx;
  const unique = new Map<string, BlockRef & { offset: number }>();
  for (const b of blocks) if (!unique.has(b.hash)) unique.set(b.hash, b);
  const hashes = [...unique.keys()];
  const missing: string[] = [];
  const step = Math.max(1, config.limits.max_check_hashes);
  for (let i = 0; i < hashes.length; i += step) missing.push(...(await client.checkBlocks(hashes.slice(i, i + step))).missing);
  ctx.stats.checkedBlocks += hashes.length;
  if (!missing.length) return;
  const fh = await open(staging, 'r');
  try {
    let next = 0;
    const worker = async () => {
      while (next < missing.length && !cancelled()) {
        const b = unique.get(missing[next++]!)!;
        const bytes = Buffer.allocUnsafe(b.size);
        const { bytesRead } = await fh.read(bytes, 0, b.size, b.offset);
        if (bytesRead !== b.size) throw new Error(`staging file ${staging} is shorter than its blocks`);
        await client.putBlock(b.hash, bytes);
        ctx.stats.uploadedBlocks++;
        ctx.stats.uploadedBytes += b.size;
        await ctx.cache.put(b.hash, bytes).catch(() => undefined);
      }
    };
    await Promise.all(Array.from({ length: Math.min(ctx.parallelUploads, missing.length) }, worker));
  } finally {
    await fh.close();
  }
}
