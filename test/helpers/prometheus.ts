import parsePrometheusTextFormat, { type PromFamily } from 'parse-prometheus-text-format';

/**
 * Prometheus text exposition, read with a real parser (parse-prometheus-text-format), for tests
 * of `GET /metrics` and of the drive's metrics. The whole text is parsed (a malformed line throws);
 * samples are then read one line at a time with the same parser, because it folds the series of a
 * labelled histogram into one (its `_bucket`, `_sum`, `_count` lines are read here as the plain
 * samples they are).
 */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Metrics {
  /** The families as the parser groups them (names, types, help). */
  families: PromFamily[];
  samples: Sample[];
  /** The family named so, or undefined. */
  family(name: string): PromFamily | undefined;
  /**
   * The sum of the samples named `name` (a counter, a gauge, a histogram's `_count` or `_sum`)
   * whose labels include `labels`; 0 when none does, an error when no family has that name.
   */
  value(name: string, labels?: Record<string, string>): number;
}

export function parseMetrics(text: string): Metrics {
  const families = parsePrometheusTextFormat(text);
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const [family] = parsePrometheusTextFormat(`${line}\n`);
    const sample = family?.metrics[0];
    if (!family || !sample || sample.value === undefined) throw new Error(`metrics text: a sample line the parser does not read: ${line}`);
    samples.push({ name: family.name, labels: sample.labels ?? {}, value: Number(sample.value) });
  }
  const family = (name: string) => families.find((f) => f.name === name);
  const matches = (have: Record<string, string>, want: Record<string, string>) => Object.entries(want).every(([k, v]) => have[k] === v);
  return {
    families,
    samples,
    family,
    value(name, labels = {}) {
      if (!family(name) && !family(name.replace(/_(count|sum|bucket)$/, ''))) throw new Error(`no metric ${name} in:\n${text}`);
      return samples.filter((s) => s.name === name && matches(s.labels, labels)).reduce((n, s) => n + s.value, 0);
    },
  };
}

/** GET `url` and parse it; fails on a non-200 or a content type other than Prometheus text. */
export async function scrapeMetrics(url: string): Promise<Metrics> {
  const res = await fetch(url);
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status} ${text}`);
  if (!/^text\/plain; version=0\.0\.4/.test(res.headers.get('content-type') ?? '')) throw new Error(`GET ${url}: content type ${res.headers.get('content-type')}`);
  return parseMetrics(text);
}
