/** Markdown output of the bench. */

export interface Figure {
  /** What was measured, with its unit, e.g. "cold sequential read (MB/s)". */
  what: string;
  stratus: number;
  /** The same operation on native disk in the same run (absent where there is none). */
  native?: number;
  /** The same operation through rclone mount in the same run (scripts/bench/rclone.ts). */
  rclone?: number;
}

export interface Section {
  title: string;
  figures: Figure[];
  /** Printed under the table. */
  notes?: string[];
}

/** A number with sensible precision: 0.0123, 1.23, 12.3, 1234. */
export function num(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '—';
  const a = Math.abs(n);
  if (a === 0) return '0';
  if (a < 0.1) return n.toPrecision(2);
  if (a < 10) return n.toFixed(2);
  if (a < 100) return n.toFixed(1);
  return n.toFixed(0);
}

export function markdownTable(head: string[], rows: string[][], rightAligned = head.map((_, i) => i > 0)): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(head), line(rightAligned.map((r) => (r ? '---:' : '---'))), ...rows.map(line)].join('\n');
}

/** A section as `## title` + a table of Stratus vs native (and rclone mount where measured), with the ratios, + notes. */
export function renderSection(s: Section): string {
  const withRclone = s.figures.some((f) => f.rclone !== undefined);
  const ratio = (a: number, b: number | undefined) => (b ? num(a / b) : '—');
  const head = withRclone ? ['what', 'native disk', 'rclone mount', 'Stratus', 'Stratus / native', 'Stratus / rclone'] : ['what', 'Stratus', 'native disk', 'Stratus / native'];
  const rows = s.figures.map((f) =>
    withRclone
      ? [f.what, num(f.native), num(f.rclone), num(f.stratus), ratio(f.stratus, f.native), ratio(f.stratus, f.rclone)]
      : [f.what, num(f.stratus), num(f.native), ratio(f.stratus, f.native)],
  );
  const notes = (s.notes ?? []).map((n) => `- ${n}`);
  return [`## ${s.title}`, markdownTable(head, rows), ...(notes.length ? ['', ...notes] : [])].join('\n');
}

/** The `p`th percentile of `xs` (nearest rank); NaN when there are none. */
export function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
