import { ApiError } from '../../protocol/errors.js';
import type { BlockRef, Manifest } from '../../protocol/types.js';
import type { ContentOp } from '../model/ops.js';
import type { Entry } from '../oplog/op-log.js';
import { keepAsCopy } from './keep-as-copy.js';
import type { CommitResult, SendContext } from './send-context.js';
import { cutSave } from './recut.js';
import { uploadMissing } from './upload.js';

/**
 * Commits a closed file's content (invariants 5 and 6): chunks and hashes the staging file in a
 * worker, uploads the blocks the server lacks, commits on the base version. A stale base is a
 * conflict unless the head is this very commit (an earlier attempt whose reply was lost); a
 * conflict, or the file deleted elsewhere, keeps the bytes as a conflicted copy. Undefined when the
 * entry was cancelled meanwhile (the file was deleted here).
 */
export async function sendContent(ctx: SendContext, entry: Entry<ContentOp>): Promise<CommitResult | undefined> {
  const { op } = entry;
  const sid = ctx.tree.node(op.ino)?.sid;
  if (!sid) throw new Error(`the file of a queued save is not on the server yet`);
  let cut = await cutSave(ctx, op);
  await uploadMissing(ctx, op.staging, cut.fresh, () => entry.send.cancelled);
  if (entry.send.cancelled) return undefined;
  let refs: BlockRef[] = cut.refs.map((b) => ({ hash: b.hash, size: b.size }));
  const base = Math.max(op.baseVersion, ctx.log.own(op.ino));
  const commit = () => ctx.client.commit(sid, { base_version: base, blocks: refs, size: op.size, mtime: op.mtime });
  try {
    try {
      return await committed(ctx, entry, sid, await commit());
    } catch (err) {
      // Blocks of the version the save was made on are gone from the server (purged): cut and upload all of it.
      if (!(err instanceof ApiError && err.code === 'missing_blocks' && op.base)) throw err;
      cut = await cutSave(ctx, op, true);
      await uploadMissing(ctx, op.staging, cut.fresh, () => entry.send.cancelled);
      if (entry.send.cancelled) return undefined;
      refs = cut.refs.map((b) => ({ hash: b.hash, size: b.size }));
      return await committed(ctx, entry, sid, await commit());
    }
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    if (err.code === 'stale_version') {
      const head = await ctx.client.manifest(sid, 'head');
      if (head.base_version === base && head.size === op.size && sameBlocks(head.blocks, refs)) return committed(ctx, entry, sid, head);
    }
    if (err.code === 'stale_version' || err.code === 'node_deleted' || err.code === 'not_found' || err.code === 'forbidden') {
      return keepAsCopy(ctx, entry, sid, refs, err.code === 'stale_version' ? 'stale' : err.code === 'forbidden' ? 'refused' : 'gone');
    }
    throw err;
  }
}

async function committed(ctx: SendContext, entry: Entry<ContentOp>, sid: string, manifest: Manifest): Promise<CommitResult> {
  const { ino } = entry.op;
  ctx.stats.commits++;
  await ctx.log.made(ino, manifest.version);
  // Size and mtime as committed, unless something logged later (an mtime, a newer save) has its own.
  ctx.tree.patchServer(ino, { head_version: manifest.version, size: manifest.size, mtime: manifest.mtime }, ctx.log.laterOf(entry));
  // What this mount wrote opens offline too (its blocks are in the cache from the upload).
  ctx.store.putManifest(sid, manifest.version, manifest.blocks).catch(() => undefined);
  return { ino, nodeId: sid, manifest };
}

function sameBlocks(a: BlockRef[], b: BlockRef[]): boolean {
  return a.length === b.length && a.every((x, i) => x.hash === b[i]!.hash && x.size === b[i]!.size);
}
