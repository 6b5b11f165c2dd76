import type { BlockRef } from '../../protocol/types.js';
import type { ContentOp } from '../model/ops.js';
import type { Entry } from '../oplog/op-log.js';
import { describeNode } from './describe.js';
import { createUnderFreeName } from './free-name.js';
import { liveFolder } from './live-folder.js';
import { refreshNode } from './refresh-node.js';
import type { CommitResult, SendContext } from './send-context.js';

/**
 * Why a save is kept as a copy: the head moved (`stale`), the file went away elsewhere (`gone`),
 * or the server refuses this user's change for good (`refused`: a share's role lowered to viewer,
 * or the share revoked, while the save was queued).
 */
export type KeepReason = 'stale' | 'gone' | 'refused';

/**
 * Invariant 6: these bytes are kept. Stale: as a conflicted copy next to the file, which shows
 * the server's head again. Refused: the same, at the root of the user's own tree (where they may
 * write). Gone: under the file's own name (its folder made again if that went too), and the local
 * node is that new file from now on (later saves go there).
 */
export async function keepAsCopy(ctx: SendContext, entry: Entry<ContentOp>, sid: string, refs: BlockRef[], reason: KeepReason): Promise<CommitResult> {
  const { client, tree } = ctx;
  const { op } = entry;
  const stale = reason !== 'gone';
  const local = tree.node(op.ino);
  const server = await client.node(sid).catch(() => undefined);
  const parentSid =
    reason === 'refused' ? tree.rootSid : ((local?.parent != null ? tree.node(local.parent)?.sid : undefined) ?? server?.parent_id ?? tree.rootSid);
  const name = local?.name ?? server?.name ?? `recovered ${sid}`;
  const mode = local?.mode ?? server?.mode;
  const { info } = await createUnderFreeName(
    ctx,
    { parent_id: await liveFolder(ctx, parentSid), name, kind: 'file', mtime: op.mtime, ...(mode !== undefined && { mode }) },
    { dated: new Date(entry.createdAt), conflicted: stale },
  );
  const manifest = await client.commit(info.id, { base_version: 0, blocks: refs, size: op.size, mtime: op.mtime });
  ctx.stats.conflicts++;
  ctx.say(`kept local edit of ${describeNode(tree, op.ino)} as ${info.name}`, 'warn');
  const copy = { ...info, head_version: manifest.version, size: manifest.size, mtime: manifest.mtime };
  if (stale) {
    tree.applyServer(copy);
    // The file itself shows the server's head now.
    await refreshNode(ctx, sid);
  } else {
    tree.setSid(op.ino, copy.id);
    await ctx.log.made(op.ino, manifest.version, true);
    tree.applyServer(copy);
  }
  return { ino: op.ino, nodeId: copy.id, manifest, conflictedCopy: copy.name };
}
