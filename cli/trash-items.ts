import type { StratusClient } from '../protocol/client.js';
import type { TrashItem } from '../protocol/types.js';
import { humanSize, localTime, plural, table } from './display.js';

/**
 * The trash as the CLI sees it (GET /v1/trash): every item, and which of them were at a path of
 * the drive. An item's `path` is where it was in the user's tree ("/Projects/report.txt");
 * a path on a drive is the names from its root, compared in NFC as the server stores names.
 */

/** Every item of the caller's trash, newest first, following the server's pages. */
export async function allTrash(client: Pick<StratusClient, 'trash'>): Promise<TrashItem[]> {
  const out: TrashItem[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await client.trash({ after });
    out.push(...page.items);
    if (page.next === null || page.next === after) return newestFirst(out);
    after = page.next;
  }
}

function newestFirst(items: TrashItem[]): TrashItem[] {
  return items.map((item, i) => ({ item, i, t: Date.parse(item.deleted_at) })).sort((a, b) => b.t - a.t || a.i - b.i).map((x) => x.item);
}

/** A path as names ("/Projects/a.txt", "Projects/a.txt/" → ["Projects", "a.txt"]), in NFC. */
export function namesOf(p: string): string[] {
  return p.normalize('NFC').split('/').filter(Boolean);
}

/** The drive-relative path of names as the trash spells it: "/Projects/a.txt" ("/" for the root). */
export function trashPath(names: string[]): string {
  return `/${names.join('/')}`;
}

const same = (a: string[], b: string[]) => a.length === b.length && a.every((n, i) => n === b[i]);
const below = (inner: string[], outer: string[]) => inner.length > outer.length && outer.every((n, i) => n === inner[i]);

/** The items that were at exactly that path, newest first. */
export function itemsAt(items: TrashItem[], names: string[]): TrashItem[] {
  const want = names.map((n) => n.normalize('NFC'));
  return newestFirst(items.filter((item) => same(namesOf(item.path), want)));
}

/** The items that were at that path or anywhere under it (all of them for the root), newest first. */
export function itemsUnder(items: TrashItem[], names: string[]): TrashItem[] {
  const want = names.map((n) => n.normalize('NFC'));
  return newestFirst(items.filter((item) => same(namesOf(item.path), want) || below(namesOf(item.path), want)));
}

/** The newest folder in the trash that held that path when it was deleted (what to restore to get it back). */
export function wentWith(items: TrashItem[], names: string[]): TrashItem | undefined {
  const want = names.map((n) => n.normalize('NFC'));
  return newestFirst(items.filter((item) => item.kind === 'dir' && below(want, namesOf(item.path))))[0];
}

/** "folder, 40 files, 12.3MB", "file, 1.2KB", "symbolic link". */
export function itemSummary(item: TrashItem): string {
  if (item.kind === 'dir') return `folder, ${plural(item.files, 'file')}, ${humanSize(item.size)}`;
  if (item.kind === 'link') return 'symbolic link';
  return `file, ${humanSize(item.size)}`;
}

/** The trash as a table, newest first: where each item was, its size, when and by which device it was deleted, its id. */
export function trashTable(items: TrashItem[]): string {
  return table(
    ['DELETED', 'NAME', 'WAS IN', 'SIZE', 'FILES', 'BY', 'ID'],
    items.map((item) => {
      const names = namesOf(item.path);
      return [
        localTime(item.deleted_at),
        `${item.name}${item.kind === 'dir' ? '/' : item.kind === 'link' ? ' (link)' : ''}`,
        trashPath(names.slice(0, -1)),
        item.kind === 'link' ? '-' : humanSize(item.size),
        item.kind === 'dir' ? String(item.files) : '-',
        item.deleted_by ?? '-',
        item.id,
      ];
    }),
    [3, 4],
  );
}
