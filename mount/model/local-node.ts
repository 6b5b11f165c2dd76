import type { NodeInfo, NodeKind } from '../../protocol/types.js';

/** The inode number of the drive's root folder. */
export const ROOT_INO = 1;

/**
 * A node as the mount knows it. `ino` is its identity for the life of the mount's state: handles,
 * write sessions, queued operations and local times point at it. `sid` is the server's id, an
 * attribute that arrives once the server has the node (null until then); nothing is rewritten
 * when it does.
 */
export interface LocalNode {
  ino: number;
  sid: string | null;
  /** The folder holding it (its ino); null for the root. */
  parent: number | null;
  name: string;
  kind: NodeKind;
  /** The server version its content is (0: none yet). */
  headVersion: number;
  size: number;
  mtime: number;
  mode: number;
  /** A folder whose children have been fetched (and are kept fresh). */
  listed: boolean;
  /** A link's target as written (links only). */
  target?: string;
  /** Shared with this user as a viewer: nothing of it may change here (EACCES). */
  readOnly?: true;
  /** A share with this user, where it shows in their tree: theirs to rename, move or remove (for themselves). */
  entry?: true;
}

/** The fields of a node the server describes (identity and place are the caller's). */
export function serverFields(info: NodeInfo): Pick<LocalNode, 'kind' | 'headVersion' | 'size' | 'mtime' | 'mode' | 'target' | 'readOnly' | 'entry'> {
  return {
    kind: info.kind,
    headVersion: info.head_version,
    size: info.size,
    mtime: info.mtime,
    mode: info.mode,
    ...(info.target !== undefined && { target: info.target }),
    ...(info.role === 'viewer' && { readOnly: true }),
    ...(info.share_entry && { entry: true }),
  };
}
