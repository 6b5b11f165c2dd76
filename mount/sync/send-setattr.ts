import { isRefusal } from '../../protocol/transient.js';
import type { SetattrOp } from '../model/ops.js';
import type { Entry } from '../oplog/op-log.js';
import { describeNode } from './describe.js';
import { isGone } from './gone.js';
import type { SendContext } from './send-context.js';

/** Sends chmod / an mtime. The node gone elsewhere: nothing to change. */
export async function sendSetattr(ctx: SendContext, entry: Entry<SetattrOp>): Promise<void> {
  const { op } = entry;
  const sid = ctx.tree.node(op.ino)?.sid;
  if (!sid) return;
  try {
    await ctx.client.update(sid, { ...(op.mode !== undefined && { mode: op.mode }), ...(op.mtime !== undefined && { mtime: op.mtime }) });
  } catch (err) {
    if (isGone(err)) return;
    if (!isRefusal(err)) throw err;
    ctx.say(`attributes of ${describeNode(ctx.tree, op.ino)} refused: ${err.message}`, 'warn');
  }
}
