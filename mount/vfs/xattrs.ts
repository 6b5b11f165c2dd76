import type { LocalNode } from '../model/local-node.js';
import { FsError } from '../model/errors.js';
import type { SyncStates } from '../sync-state/sync-state.js';

/**
 * The drive's extended attributes (DESIGN §6): read-only, computed, under `user.stratus.`:
 *
 *   user.stratus.state   the node's sync state, one word (mount/sync-state/sync-state.ts)
 *   user.stratus.status  the same with its numbers, as JSON (what `stratus status PATH` shows)
 *
 * A name outside `user.stratus.` answers ENOTSUP at once, without looking the node up — what the
 * kernel answered for every name before the drive took getxattr. `ls -l` asks for the ACL and the
 * security label of every entry; on ENOTSUP it remembers the file system has none and stops
 * asking (coreutils' per-device cache), on ENODATA it asks again for each entry: measured on 500
 * entries, 1,003 round trips into the mount (0.1-0.27 s) against 2 (as fast as before).
 * Another name under `user.stratus.` is ENODATA (the namespace exists, the attribute does not).
 * listxattr lists nothing: the names are known, not discovered, so `cp -a`, `rsync -X` and
 * `tar --xattrs` never copy a sync state off the drive as if it were the file's own attribute.
 * Setting or removing any attribute is ENOTSUP (as before the drive took these calls): the same
 * answer for `user.stratus.*` keeps `cp -a` within the drive quiet.
 */
export const XATTR_PREFIX = 'user.stratus.';
export const STATE_XATTR = `${XATTR_PREFIX}state`;
export const STATUS_XATTR = `${XATTR_PREFIX}status`;

/** Whether the drive answers this name at all (others: ENODATA without a lookup). */
export function isDriveXattr(name: string): boolean {
  return name === STATE_XATTR || name === STATUS_XATTR;
}

export class Xattrs {
  constructor(private readonly states: SyncStates) {}

  async get(node: LocalNode, name: string): Promise<Buffer> {
    if (name === STATE_XATTR) return Buffer.from(await this.states.stateOf(node));
    if (name === STATUS_XATTR) return Buffer.from(JSON.stringify(await this.states.statusOf(node)));
    throw new FsError('ENODATA');
  }
}
