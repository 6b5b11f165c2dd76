import { LRUCache } from 'lru-cache';

/**
 * Inode numbers of the virtual tree (`.stratus/`), from a range of their own: the top quarter of
 * the 32 bits st_ino crosses fuse-native in. Real nodes count up from 2 (node/tree.ts `newIno`); a
 * drive would have to see three billion of them to reach this range.
 */
export const FIRST_VIRTUAL_INO = 0xc000_0000;
const LAST_VIRTUAL_INO = 0xffff_ffff;
/** How many virtual nodes keep their number while unused (the least recently used beyond get a new one next time). */
const REMEMBERED = 100_000;

/**
 * A virtual node's inode number by what it is (a key such as "version 3 of node 17"): the same node
 * gets the same number while it is remembered, and no two nodes share one (numbers are handed out
 * once, until the range of a billion wraps).
 */
export class VirtualInodes {
  private readonly byKey = new LRUCache<string, number>({ max: REMEMBERED });
  private next = FIRST_VIRTUAL_INO;

  of(key: string): number {
    let ino = this.byKey.get(key);
    if (ino === undefined) {
      ino = this.next;
      this.next = ino === LAST_VIRTUAL_INO ? FIRST_VIRTUAL_INO : ino + 1;
      this.byKey.set(key, ino);
    }
    return ino;
  }
}
