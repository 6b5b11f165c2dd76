import { ApiError } from '../../protocol/errors.js';
import type { NodeInfo } from '../../protocol/types.js';
import type { SendContext } from './send-context.js';

/**
 * The server id of a live folder at the place of `sid`: the folder itself, or — when it was
 * deleted elsewhere while this mount wrote into it — a folder of the same name made again in its
 * (recursively live) parent, so what was written keeps its path.
 */
export async function liveFolder(ctx: Pick<SendContext, 'client' | 'tree'>, sid: string): Promise<string> {
  let info: NodeInfo;
  try {
    info = await ctx.client.node(sid);
  } catch (err) {
    if (err instanceof ApiError && err.code === 'not_found') return ctx.tree.rootSid;
    throw err;
  }
  if (info.deleted_at === null || info.parent_id === null) return info.id;
  const parent = await liveFolder(ctx, info.parent_id);
  try {
    const made = await ctx.client.create({ parent_id: parent, name: info.name, kind: 'dir', mode: info.mode, mtime: info.mtime });
    ctx.tree.applyServer(made);
    return made.id;
  } catch (err) {
    if (!(err instanceof ApiError && err.code === 'exists')) throw err;
    if (err.extra.kind === 'dir' && typeof err.extra.node_id === 'string') return err.extra.node_id;
    return parent;
  }
}
