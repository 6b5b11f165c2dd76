import { ApiError } from '../../protocol/errors.js';
import { isRefusal } from '../../protocol/transient.js';
import type { DeleteOp } from '../model/ops.js';
import type { Entry } from '../oplog/op-log.js';
import { describeNode } from './describe.js';
import { isGone } from './gone.js';
import { refreshNode } from './refresh-node.js';
import type { SendContext } from './send-context.js';

/**
 * Sends unlink/rmdir: a file only at the version this mount saw (an edit made elsewhere meanwhile
 * survives the delete and shows again), a folder only while empty on the server. The head being
 * this mount's own later save (it landed after the delete was logged): that save is deleted.
 */
export async function sendDelete(ctx: SendContext, entry: Entry<DeleteOp>): Promise<void> {
  const { op } = entry;
  const sid = ctx.tree.node(op.ino)?.sid;
  if (!sid) return;
  await deleteIfAt(ctx, sid, op.folder ? { ifEmpty: true } : op.ifVersion === undefined ? {} : { ifVersion: op.ifVersion }, ctx.log.own(op.ino), describeNode(ctx.tree, op.ino));
}

/** Deletes a node if it is still as `cond` says (or at this mount's own version `own`); else shows the server's state of it. */
export async function deleteIfAt(ctx: SendContext, sid: string, cond: { ifVersion?: number; ifEmpty?: boolean }, own: number, what = 'a removed file'): Promise<void> {
  try {
    await ctx.client.remove(sid, cond);
  } catch (err) {
    if (isGone(err)) return;
    if (err instanceof ApiError && err.code === 'stale_version' && cond.ifVersion !== undefined && own > 0 && Number(err.extra.head_version) === own) {
      await deleteIfAt(ctx, sid, { ifVersion: own }, 0, what);
      return;
    }
    if (!isRefusal(err)) throw err;
    ctx.say(`kept ${what}: its delete was refused (${err.code}: ${err.message})`, 'warn');
    await refreshNode(ctx, sid);
  }
}
