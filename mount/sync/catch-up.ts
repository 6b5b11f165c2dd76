import type { StratusClient } from '../../protocol/client.js';
import type { Tree } from '../vfs/tree.js';

/**
 * Brings the tree up to date from the change feed: pulls `/v1/changes?since=cursor` page by page
 * and applies each node's state (state, not operations: applying twice is harmless).
 * Returns the new cursor.
 */
export async function catchUp(client: StratusClient, tree: Tree, cursor: number): Promise<number> {
  let since = cursor;
  for (;;) {
    const page = await client.changes(since);
    for (const change of page.changes) tree.applyInfo(change);
    since = page.cursor;
    tree.setCursor(since);
    if (!page.has_more) return since;
  }
}
