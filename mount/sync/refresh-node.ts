import type { SendContext } from './send-context.js';

/**
 * Fetches the server's state of a node and shows it, its size and mtime too (a refused change, or
 * a save that became a conflicted copy, leaves the node as the server has it). Best effort.
 */
export async function refreshNode(ctx: Pick<SendContext, 'client' | 'tree'>, sid: string): Promise<void> {
  const info = await ctx.client.node(sid).catch(() => undefined);
  if (info) ctx.tree.applyServer(info, true);
}
