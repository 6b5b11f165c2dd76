import type { LocalNode } from '../model/local-node.js';
import type { Tree } from '../node/tree.js';

/** What a walk of a subtree found: its files, and folders it could not list (the server did not answer). */
export interface Subtree {
  files: LocalNode[];
  unlisted: number;
}

/** How many nodes a walk visits between two turns of the event loop. */
const YIELD_EVERY = 2_000;

/**
 * The files at and under `ino` (a file alone, or everything in a folder), walking the tree the
 * mount holds. With `list`, folders not listed here yet are listed from the server first (a pin
 * must know everything under it); without, they are skipped and counted (a restart offline uses
 * what was saved). Links are not files: they have no content to keep.
 */
export async function subtreeFiles(tree: Tree, ino: number, opts: { list: boolean }): Promise<Subtree> {
  const start = tree.get(ino);
  const out: Subtree = { files: [], unlisted: 0 };
  if (!start) return out;
  const stack: LocalNode[] = [start];
  let visited = 0;
  while (stack.length) {
    const node = stack.pop()!;
    if (++visited % YIELD_EVERY === 0) await new Promise<void>((r) => setImmediate(r));
    if (node.kind === 'file') out.files.push(node);
    if (node.kind !== 'dir') continue;
    if (!node.listed) {
      if (!opts.list) {
        out.unlisted++;
        continue;
      }
      try {
        await tree.ensureListed(node);
      } catch {
        out.unlisted++;
        continue;
      }
    }
    for (const kid of tree.children(node.ino)) stack.push(kid);
  }
  return out;
}

/** The node's path in the drive ("/a/b"), from its names up to the root. */
export function pathOf(tree: Tree, ino: number): string | undefined {
  const names: string[] = [];
  let node = tree.get(ino);
  while (node && node.parent !== null) {
    names.push(node.name);
    node = tree.get(node.parent);
  }
  if (!node) return undefined;
  return `/${names.reverse().join('/')}`;
}

/** `ino` is `root` or under it. */
export function isWithin(tree: Tree, ino: number, root: number): boolean {
  let node = tree.get(ino);
  while (node) {
    if (node.ino === root) return true;
    if (node.parent === null) return false;
    node = tree.get(node.parent);
  }
  return false;
}
