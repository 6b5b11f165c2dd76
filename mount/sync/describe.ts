import type { Tree } from '../node/tree.js';
import { pathOf } from '../pins/subtree.js';

/**
 * How the drive's log names a node: its path on the drive ("/docs/report.txt"), as the user knows
 * it, never a server id or an inode number. A node removed here (a queued delete still names it)
 * is named by its folder's path and its last name.
 */
export function describeNode(tree: Tree, ino: number): string {
  const here = pathOf(tree, ino);
  if (here !== undefined) return here;
  const node = tree.node(ino);
  if (!node) return 'a file removed since';
  const folder = node.parent === null ? undefined : pathOf(tree, node.parent);
  return folder === undefined ? `"${node.name}"` : `${folder === '/' ? '' : folder}/${node.name}`;
}
