import { ApiError } from '../../protocol/errors.js';
import type { CreateNodeRequest, NodeInfo } from '../../protocol/types.js';
import type { CreateOp } from '../model/ops.js';
import type { Entry } from '../oplog/op-log.js';
import { createUnderFreeName } from './free-name.js';
import { isGone } from './gone.js';
import { liveFolder } from './live-folder.js';
import type { SendContext } from './send-context.js';

/**
 * Creates on the server a node made here, in its folder and under the name it was made with (a
 * later rename is an operation of its own). A name taken meanwhile keeps both: ours becomes a
 * conflicted copy — except where the two are one: folders of one name merge, a link with the same
 * target is the same link, and an empty file whose content is on its way (ours, whose reply was
 * lost, or another device's) is taken over. A folder deleted elsewhere meanwhile is made again;
 * one the user may no longer write to (a share's role lowered) leaves the node in their root.
 * The node's server id arrives here; nothing else changes its identity.
 */
export async function sendCreate(ctx: SendContext, entry: Entry<CreateOp>): Promise<void> {
  const { op } = entry;
  const parentSid = ctx.tree.node(op.parent)?.sid;
  if (!parentSid) throw new Error(`the folder of "${op.name}" is not on the server yet`);
  const req: Omit<CreateNodeRequest, 'parent_id'> & { name: string } = {
    name: op.name,
    kind: op.nodeKind,
    mtime: op.mtime,
    ...(op.nodeKind === 'link' ? { target: op.target ?? '' } : { mode: op.mode }),
  };
  const create = (parent: string) => createUnderFreeName(ctx, { ...req, parent_id: parent }, { dated: new Date(entry.createdAt), join: (existing) => joinable(op, existing) });
  let made: { info: NodeInfo; joined: boolean };
  try {
    made = await create(parentSid);
  } catch (err) {
    // A share whose role was lowered to viewer meanwhile: what was made here is kept in the user's own root (invariant 6).
    if (err instanceof ApiError && err.code === 'forbidden') made = await create(ctx.tree.rootSid);
    else if (!isGone(err)) throw err;
    else made = await create(await liveFolder(ctx, parentSid));
  }
  const { info, joined } = made;
  ctx.tree.setSid(op.ino, info.id);
  const node = ctx.tree.get(op.ino);
  // A folder joined on the server has children this mount has not listed.
  if (joined && node?.kind === 'dir') ctx.tree.patch(op.ino, { listed: false });
  // Made under another name (or in a folder made again): the node shows where the server has it,
  // unless it was renamed here since (that rename follows).
  if (node && !ctx.log.laterStructural(entry) && (info.name !== op.name || info.parent_id !== parentSid)) ctx.tree.applyServer(info);
}

/** Whether a node made here may become the node of its name the server has already. */
function joinable(op: CreateOp, existing: NodeInfo): boolean {
  if (existing.kind !== op.nodeKind) return false;
  if (op.nodeKind === 'dir') return true;
  if (op.nodeKind === 'link') return existing.target === op.target;
  return existing.head_version === 0;
}
