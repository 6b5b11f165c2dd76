import { ApiError } from '../../protocol/errors.js';
import type { CreateNodeRequest, NodeInfo } from '../../protocol/types.js';
import { conflictedCopyName } from '../model/conflict-name.js';
import type { SendContext } from './send-context.js';

/** Conflicted-copy names tried before giving up (each means another device took the previous one). */
const MAX_ATTEMPTS = 20;

/**
 * Creates a node under `name`, or — the name taken on the server — under the first free
 * conflicted-copy name (both kept, invariant 6). `join` may accept the node that has the name
 * instead (folders merge; a create of ours whose reply was lost). `conflicted` starts with the
 * conflicted-copy names.
 */
export async function createUnderFreeName(
  ctx: Pick<SendContext, 'client' | 'device'>,
  req: Omit<CreateNodeRequest, 'name'> & { name: string },
  opts: { dated: Date; conflicted?: boolean; join?: (existing: NodeInfo) => boolean },
): Promise<{ info: NodeInfo; joined: boolean }> {
  const first = opts.conflicted ? 1 : 0;
  for (let attempt = first; ; attempt++) {
    const name = attempt === 0 ? req.name : conflictedCopyName(req.name, ctx.device, opts.dated, attempt - 1);
    try {
      return { info: await ctx.client.create({ ...req, name }), joined: false };
    } catch (err) {
      if (!(err instanceof ApiError && err.code === 'exists') || attempt >= MAX_ATTEMPTS) throw err;
      if (attempt === 0 && opts.join && typeof err.extra.node_id === 'string') {
        const existing = await ctx.client.node(err.extra.node_id).catch(() => undefined);
        if (existing && existing.deleted_at === null && opts.join(existing)) return { info: existing, joined: true };
      }
    }
  }
}

/** Moves or renames a node to `name` in `parentSid`, or to the first free conflicted-copy name when the name is taken. */
export async function moveUnderFreeName(ctx: Pick<SendContext, 'client' | 'device'>, sid: string, parentSid: string, name: string, dated: Date, replace: boolean): Promise<NodeInfo> {
  for (let attempt = 0; ; attempt++) {
    const tryName = attempt === 0 ? name : conflictedCopyName(name, ctx.device, dated, attempt - 1);
    try {
      return await ctx.client.update(sid, { parent_id: parentSid, name: tryName, ...(replace && attempt === 0 && { replace: true }) });
    } catch (err) {
      if (!(err instanceof ApiError && err.code === 'exists') || attempt >= MAX_ATTEMPTS) throw err;
    }
  }
}
