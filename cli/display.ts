import bytes from 'bytes';

/**
 * How the history and trash commands show things to a person: aligned tables, sizes as `ls -h`
 * would (powers of 1024, as `stratus status` and `--cache-size` spell them), times in the local
 * time zone to the second. Scripts use `--json`, which keeps the API's own fields.
 */

/**
 * Rows under a header, each column as wide as its widest cell, two spaces between columns and an
 * indent of two; columns in `right` are aligned right (numbers), the last column is not padded.
 * No rows: "(none)".
 */
export function table(head: string[], rows: string[][], right: number[] = []): string {
  if (!rows.length) return '  (none)\n';
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    `  ${r
      .map((c, i) => (right.includes(i) ? c.padStart(widths[i]!) : i === r.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd()}\n`;
  return [head, ...rows].map(line).join('');
}

/** 0B, 512B, 1.5KB, 12.3MB, 4.7GB (powers of 1024). */
export function humanSize(n: number): string {
  return bytes.format(n, { decimalPlaces: 1 }) ?? `${n}B`;
}

const two = (n: number) => String(n).padStart(2, '0');

/** A time as `YYYY-MM-DD HH:MM:SS` in the local time zone (ms since the epoch, ISO 8601 text or a Date). */
export function localTime(when: number | string | Date): string {
  const d = when instanceof Date ? when : new Date(typeof when === 'string' ? Date.parse(when) : when);
  if (Number.isNaN(d.getTime())) return String(when);
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

/** "1 file", "3 files". */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}
