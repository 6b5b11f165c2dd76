import t from 'tap';
import { humanSize, localTime, table } from '../../cli/display.js';
import { parsePointInTime } from '../../cli/point-in-time.js';
import { allTrash, itemsAt, itemsUnder, itemSummary, trashTable, wentWith } from '../../cli/trash-items.js';
import { allVersions, deviceOf, versionsTable } from '../../cli/versions.js';
import type { TrashItem, TrashPage, VersionInfo } from '../../protocol/types.js';

/*
 * The plain parts of `stratus versions`, `stratus restore --at` and `stratus trash`: tables, sizes
 * and local times as printed, how TIME is read, following the server's pages, and which trash
 * items a path on the drive names.
 */

// Local time is what the commands print: pin the zone (Node re-reads TZ when it changes).
process.env.TZ = 'Europe/Paris';

t.test('tables: columns as wide as their widest cell, numbers right-aligned, the last column unpadded; none: (none)', async (t) => {
  t.equal(
    table(['A', 'SIZE', 'LAST'], [['x', '1KB', 'end'], ['long cell', '12.5MB', '']], [1]),
    '  A            SIZE  LAST\n  x             1KB  end\n  long cell  12.5MB\n',
  );
  t.equal(table(['A'], []), '  (none)\n');
});

t.test('sizes in powers of 1024, one decimal at most; times in the local zone to the second', async (t) => {
  t.same([0, 512, 1536, 12.34 * 1024 * 1024, 5e9].map(humanSize), ['0B', '512B', '1.5KB', '12.3MB', '4.7GB']);
  t.equal(localTime('2026-12-01T09:05:07.123Z'), '2026-12-01 10:05:07', 'UTC+1 in winter');
  t.equal(localTime(Date.UTC(2026, 6, 1, 22, 0, 0)), '2026-07-02 00:00:00', 'UTC+2 in summer, across midnight');
});

t.test('--at: ISO 8601 in local time unless a zone is given, or how long ago; typos, impossible dates and the future are refused', async (t) => {
  const now = Date.UTC(2026, 11, 24, 12, 0, 0);
  t.equal(parsePointInTime('2026-12-01T10:00', now), Date.UTC(2026, 11, 1, 9, 0), 'no zone: Paris time');
  t.equal(parsePointInTime('2026-12-01 10:00:30', now), Date.UTC(2026, 11, 1, 9, 0, 30), 'a space for the T');
  t.equal(parsePointInTime('2026-12-01T10:00:30.25', now), Date.UTC(2026, 11, 1, 9, 0, 30, 250), 'fractions of a second');
  t.equal(parsePointInTime('2026-12-01', now), Date.UTC(2026, 10, 30, 23, 0), 'a date alone: local midnight (not UTC midnight, as Date.parse would take it)');
  t.equal(parsePointInTime('2026-12-01T10:00Z', now), Date.UTC(2026, 11, 1, 10, 0), 'Z: UTC');
  t.equal(parsePointInTime('2026-12-01T10:00:00+05:30', now), Date.UTC(2026, 11, 1, 4, 30), 'an offset');
  t.equal(parsePointInTime('2026-12-01T10:00-0200', now), Date.UTC(2026, 11, 1, 12, 0), 'an offset without a colon');
  t.equal(parsePointInTime('2h', now), now - 2 * 3_600_000, '2h: two hours ago');
  t.equal(parsePointInTime('30m', now), now - 30 * 60_000);
  t.equal(parsePointInTime('3d', now), now - 3 * 86_400_000);
  for (const bad of ['', 'yesterday', '2 h', '2h ago', '0h', '2026-13-01', '2026-02-30', '2026-12-01T24:00', '2026-12-01T10:60', '2026-12-01Z', '2026-12-1', '26-12-01', '2026-12-01T10', '2026-12-01T10:00+25:00']) {
    t.throws(() => parsePointInTime(bad, now), /^not a time: "/, `"${bad}" is refused`);
  }
  t.equal(parsePointInTime('1733050000000', now), 1733050000000, 'ms since 1970, as .stratus/at/ takes them too');
  t.throws(() => parsePointInTime('2026-12-24T13:00:01Z', now), /is in the future/, 'the future is refused');
  t.equal(parsePointInTime('2026-12-24T12:00:00Z', now), now, 'now itself is fine');
});

const version = (v: number, over: Partial<VersionInfo> = {}): VersionInfo => ({
  node_id: 'n1',
  version: v,
  size: v * 1000,
  mtime: 0,
  device_id: `dev${v}`,
  base_version: v - 1,
  committed_at: new Date(Date.UTC(2026, 11, 1, 9, v)).toISOString(),
  device_name: `laptop${v}`,
  ...over,
});

t.test('versions: every page, newest first; the device by name, else by id; the head marked current', async (t) => {
  const asked: Array<number | undefined> = [];
  const all = [5, 4, 3, 2, 1].map((v) => version(v));
  const client = {
    versions: async (_id: string, page: { before?: number } = {}) => {
      asked.push(page.before);
      const rest = all.filter((v) => page.before === undefined || v.version < page.before).slice(0, 2);
      return { versions: rest, next: rest.length === 2 && rest.at(-1)!.version > 1 ? rest.at(-1)!.version : null };
    },
  };
  const got = await allVersions(client, 'n1');
  t.same(got.map((v) => v.version), [5, 4, 3, 2, 1], 'all five, newest first');
  t.same(asked, [undefined, 4, 2], 'followed the pages with before=');
  t.equal(deviceOf(version(1, { device_name: null })), 'dev1', 'no name: the device id');
  t.equal(deviceOf(version(1, { device_name: undefined, device_id: null })), '-', 'neither: -');
  t.equal(
    versionsTable([version(12, { size: 1536 }), version(2)], 12),
    '  VERSION       SAVED                 SIZE  DEVICE\n' + '  12 (current)  2026-12-01 10:12:00  1.5KB  laptop12\n' + '  2             2026-12-01 10:02:00    2KB  laptop2\n',
  );
});

const item = (id: string, p: string, deleted: string, over: Partial<TrashItem> = {}): TrashItem => ({
  id,
  name: p.split('/').pop()!,
  kind: 'file',
  path: p,
  parent_id: 'p',
  size: 2048,
  files: 1,
  deleted_at: deleted,
  deleted_by: 'laptop',
  ...over,
});

t.test('trash: every page; items at a path (exact, NFC, newest first), under a path, and the folder a path went with', async (t) => {
  const items = [
    item('t1', '/Projects', '2026-12-01T10:00:00Z', { kind: 'dir', files: 40, size: 12 * 1024 * 1024 }),
    item('t2', '/Projects/notes.txt', '2026-12-01T09:00:00Z'),
    item('t3', '/Projects', '2026-12-02T10:00:00Z', { kind: 'dir', files: 2 }),
    item('t4', '/Caf\u00e9.txt', '2026-12-01T08:00:00Z'),
    item('t5', '/Projects2/x', '2026-12-03T08:00:00Z'),
    item('t6', '/l', '2026-12-03T07:00:00Z', { kind: 'link', size: 3 }),
  ];
  const pages: TrashPage[] = [
    { items: items.slice(0, 4), next: 'c1' },
    { items: items.slice(4), next: null },
  ];
  const afters: Array<string | undefined> = [];
  const listed = await allTrash({ trash: async (page = {}) => (afters.push(page.after), pages[afters.length - 1]!) });
  t.same(afters, [undefined, 'c1'], 'followed the pages with after=');
  t.same(listed.map((i) => i.id), ['t5', 't6', 't3', 't1', 't2', 't4'], 'newest first');

  t.same(itemsAt(items, ['Projects']).map((i) => i.id), ['t3', 't1'], 'two items were at /Projects: the newest first');
  t.same(itemsAt(items, ['Projects', 'notes.txt']).map((i) => i.id), ['t2']);
  t.same(itemsAt(items, ['Cafe\u0301.txt']).map((i) => i.id), ['t4'], 'a decomposed name (as a shell may type it) matches its NFC form');
  t.same(itemsAt(items, ['Project']), [], 'no prefix matches');
  t.same(itemsUnder(items, ['Projects']).map((i) => i.id), ['t3', 't1', 't2'], 'under /Projects: not /Projects2');
  t.same(itemsUnder(items, []).length, 6, 'under the root: everything');
  t.equal(wentWith(items, ['Projects', 'sub', 'a.txt'])?.id, 't3', 'a path inside a deleted folder: the newest such folder');
  t.equal(wentWith(items, ['Projects']), undefined, 'a folder is not inside itself');
  t.same(items.slice(0, 3).map(itemSummary).concat(itemSummary(items[5]!)), ['folder, 40 files, 12MB', 'file, 2KB', 'folder, 2 files, 2KB', 'symbolic link']);

  const shown = trashTable(itemsAt(items, ['Projects']).concat(items[5]!));
  t.match(shown, /^ {2}DELETED +NAME +WAS IN +SIZE +FILES +BY +ID\n/, 'a header');
  t.match(shown, /\n {2}2026-12-02 11:00:00 +Projects\/ +\/ +2KB +2 +laptop +t3\n/, 'a folder: its name with a slash, where it was, size, files, device, id; local time');
  t.match(shown, /\n {2}2026-12-03 08:00:00 +l \(link\) +\/ +- +- +laptop +t6\n$/, 'a link: no size');
});
