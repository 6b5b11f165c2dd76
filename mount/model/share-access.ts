import { FsError } from './errors.js';
import type { LocalNode } from './local-node.js';

/**
 * What the drive refuses at once inside a share the user may only read (DESIGN §3: roles hold at
 * the server, and the mount answers EACCES without asking it). A share's entry in the user's own
 * tree is theirs: they may rename, move or remove it (for themselves) whatever their role.
 */

/** EACCES unless the node's content and attributes may change here. */
export function assertWritable(node: LocalNode): void {
  if (node.readOnly) throw new FsError('EACCES', `"${node.name}" is shared with you read-only`);
}

/** EACCES unless `node` may leave `folder` (unlink, rmdir, rename away): its folder must be writable, or it is a share's entry. */
export function assertMayDetach(node: LocalNode, folder: LocalNode | undefined): void {
  if (node.entry) return;
  if (folder) assertWritable(folder);
}

/** The mode a node shows: without write bits when it may only be read. */
export function shownMode(node: LocalNode): number {
  return node.readOnly ? node.mode & ~0o222 : node.mode;
}
