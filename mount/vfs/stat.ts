/** A node's attributes as the drive answers stat(2) (times in ms since the epoch). */
export interface Stat {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  blksize: number;
  blocks: number;
  mtime: number;
  atime: number;
  ctime: number;
}
