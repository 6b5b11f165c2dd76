import type { NodeInfo } from '../../protocol/types.js';
import type { MoveOp } from '../model/ops.js';
import type { Entry } from '../oplog/op-log.js';
import { isRefusal } from '../../protocol/transient.js';
import { describeNode } from './describe.js';
import { moveUnderFreeName } from './free-name.js';
import { isGone } from './gone.js';
import { liveFolder } from './live-folder.js';
import { refreshNode } from './refresh-node.js';
import type { SendContext } from './send-context.js';

/**
 * Sends a rename or move. Over a file the server has (`replace`), the destination node takes the
 * source's content as a new version (its history kept) and the local node takes the destination's
 * server id. A name taken meanwhile by another device: ours becomes a conflicted copy. The node
 * gone elsewhere: nothing to move (its queued content keeps itself). Its new folder gone: made
 * again. Refused for good (a folder moved into what was moved into it elsewhere): the node stays
 * where the server has it — retrying would hold up everything queued after it.
 */
export async function sendMove(ctx: SendContext, entry: Entry<MoveOp>): Promise<void> {
  const { op } = entry;
  const sid = ctx.tree.node(op.ino)?.sid;
  let parentSid = ctx.tree.node(op.parent)?.sid;
  if (!sid || !parentSid) throw new Error(`"${op.name}" or its folder is not on the server yet`);
  const replaceSid = op.replace === undefined ? undefined : (ctx.tree.node(op.replace)?.sid ?? undefined);
  for (let again = true; ; again = false) {
    try {
      const info = await moveUnderFreeName(ctx, sid, parentSid, op.name, new Date(entry.createdAt), replaceSid !== undefined);
      if (info.id !== sid) await becameDestination(ctx, entry, info);
      if (info.name !== op.name && !ctx.log.laterStructural(entry)) ctx.tree.applyServer(info);
      return;
    } catch (err) {
      if (isGone(err)) {
        const node = await ctx.client.node(sid).catch(() => undefined);
        if (node && node.deleted_at !== null && replaceSid !== undefined) {
          // Our own replace landed and its reply was lost (a crash): the destination holds our content.
          const landed = await landedReplace(ctx, node, replaceSid, parentSid, op.name);
          if (landed) await becameDestination(ctx, entry, landed);
          return;
        }
        if (!node || node.deleted_at !== null) return;
        if (!again) throw err;
        parentSid = await liveFolder(ctx, parentSid);
        continue;
      }
      if (!isRefusal(err)) throw err;
      ctx.say(`move of ${describeNode(ctx.tree, op.ino)} refused: ${err.message}; it stays where the server has it`, 'warn');
      await refreshNode(ctx, sid);
      return;
    }
  }
}

/** File over file: the destination node holds the content now; the local node is that node from here on. */
async function becameDestination(ctx: SendContext, entry: Entry<MoveOp>, info: NodeInfo): Promise<void> {
  const { op } = entry;
  ctx.tree.setSid(op.ino, info.id);
  await ctx.log.made(op.ino, info.head_version, true);
  // The version the replace made; a save logged after the rename (the file still open) has its own size.
  ctx.tree.patchServer(op.ino, info, ctx.log.laterOf(entry));
}

/**
 * The destination, when a replace of it by the (now trashed) source already happened: it is live
 * at the name, and its head is the source's content (the version the replace made).
 */
async function landedReplace(ctx: SendContext, source: NodeInfo, destSid: string, parentSid: string, name: string): Promise<NodeInfo | undefined> {
  const dest = await ctx.client.node(destSid).catch(() => undefined);
  if (!dest || dest.deleted_at !== null || dest.parent_id !== parentSid || dest.name !== name || dest.head_version === 0) return undefined;
  const theirs = await ctx.client.manifest(destSid, 'head');
  // A source never committed made an empty version.
  const mine = source.head_version === 0 ? { size: 0, blocks: [] } : await ctx.client.manifest(source.id, 'head');
  if (mine.size !== theirs.size || mine.blocks.length !== theirs.blocks.length) return undefined;
  return mine.blocks.every((b, i) => b.hash === theirs.blocks[i]!.hash && b.size === theirs.blocks[i]!.size) ? dest : undefined;
}
