import { MAX_NAME_BYTES } from '../../protocol/names.js';
import type { ServerConfig } from '../../protocol/types.js';
import { FsError } from '../model/errors.js';
import type { Tree } from '../node/tree.js';

/**
 * POSIX rules the drive applies on top of its tree, in one place: how long a name may be, why a
 * path does not resolve, how large a file may grow.
 */

/** NAME_MAX: the longest name, in bytes of UTF-8 (the server's limit too). */
export const NAME_MAX = MAX_NAME_BYTES;

function tooLong(name: string): boolean {
  // Only strings that could be over the limit are measured (a character is at most 3 bytes per UTF-16 unit).
  return name.length * 3 > NAME_MAX && Buffer.byteLength(name, 'utf8') > NAME_MAX;
}

/** ENAMETOOLONG for a name over NAME_MAX bytes (as ext4 answers, not EINVAL). */
export function checkNameLength(name: string): void {
  if (tooLong(name)) throw new FsError('ENAMETOOLONG', `a name is at most ${NAME_MAX} bytes`);
}

/**
 * Why `path` does not resolve, as Linux walks it component by component: the first that fails
 * decides — ENOTDIR when walking through a file, ENAMETOOLONG for a name over NAME_MAX bytes,
 * ENOENT for a missing one. Only called once a lookup failed, so the common path pays nothing.
 */
export async function lookupFailure(tree: Tree, path: string): Promise<FsError> {
  let node = tree.root();
  for (const part of path.split('/')) {
    if (part === '') continue;
    if (node.kind !== 'dir') return new FsError('ENOTDIR');
    if (tooLong(part)) return new FsError('ENAMETOOLONG', `a name is at most ${NAME_MAX} bytes`);
    await tree.ensureListed(node);
    const next = tree.child(node.ino, part);
    if (!next) return new FsError('ENOENT');
    node = next;
  }
  // It resolves now (made meanwhile): the lookup that failed saw it missing.
  return new FsError('ENOENT');
}

/**
 * The largest file the server can take as one version: a manifest of `max_manifest_blocks`
 * blocks of the chunker's maximum size (400 GiB with the defaults). Past it a write or truncate
 * gets EFBIG at once, as a disk answers past its largest file, instead of content that could
 * never be committed.
 */
export function fileSizeLimit(config: ServerConfig): number {
  return config.limits.max_manifest_blocks * config.chunking.max;
}

/** EFBIG for a file size over `limit`. */
export function checkFileSize(size: number, limit: number): void {
  if (size > limit) throw new FsError('EFBIG', `a file is at most ${limit} bytes here (what the server takes as one version)`);
}

/** chown's "leave this id as it is" (-1, as a uid_t crosses the FUSE binding). */
const KEEP_ID = 0xffffffff;

/**
 * The drive is a single-owner file system: every node belongs to the mounting user. chown to
 * that user and group (or -1) succeeds; to anyone else it is EPERM, as on a file system that
 * cannot store another owner (vfat, or a FUSE drive of one cloud account).
 */
export function checkOwnerChange(uid: number, gid: number, owner: { uid: number; gid: number }): void {
  const kept = (id: number, own: number) => id === -1 || id === KEEP_ID || id === own;
  if (!kept(uid, owner.uid) || !kept(gid, owner.gid)) throw new FsError('EPERM', 'every file here belongs to the mounting user');
}

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;

/**
 * mknod of anything but a regular file (FIFOs, sockets, character and block devices) is EPERM,
 * what mknod(2) answers where "the file system does not support the type of node requested".
 */
export function checkNodeType(mode: number): void {
  const type = mode & S_IFMT;
  if (type !== 0 && type !== S_IFREG) throw new FsError('EPERM', 'FIFOs, sockets and device nodes are not supported');
}
