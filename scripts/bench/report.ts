/** Markdown output of the bench. */

export interface Figure {
  /** What was measured, with its unit, e.g. "cold sequential read (MB/s)". */
  what: string;
  stratus: number;
  /** The same operation on native disk in the same run (absent where there is none). */
  native?: number;
  /** A reference figure quoted from elsewhere (not measured here). */
  reference?: number;
}

export interface Section {
  title: string;
  figures: Figure[];
  /** Printed under the table. */
  notes?: string[];
  /** Header of the reference column; the column is left out when no figure has one. */
  referenceLabel?: string;
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

/** A section as `## title` + a table of Stratus vs native (and the ratio) + notes. */
export function renderSection(s: Section): string {
  const withReference = s.figures.some((f) => f.reference !== undefined);
  const head = ['what', 'Stratus', 'native disk', 'Stratus / native'];
  if (withReference) head.push(s.referenceLabel ?? 'reference');
  const rows = s.figures.map((f) => {
    const row = [f.what, num(f.stratus), num(f.native), f.native ? num(f.stratus / f.native) : '—'];
    if (withReference) row.push(num(f.reference));
    return row;
  });
  const notes = (s.notes ?? []).map((n) => `- ${n}`);
  return [`## ${s.title}`, markdownTable(head, rows), ...(notes.length ? ['', ...notes] : [])].join('\n');
}

/** The `p`th percentile of `xs` (nearest rank); NaN when there are none. */
export function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
