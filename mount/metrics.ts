import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Running totals the drive keeps anyway (plain counters on its hot paths), read at scrape time. */
export interface DriveTotals {
  /** Block reads served from the disk cache, and their bytes. */
  cacheHits: number;
  cacheHitBytes: number;
  /** Block loads that had to go to the server, and the bytes fetched. */
  cacheMisses: number;
  fetchedBytes: number;
  /** Blocks and bytes the sender uploaded. */
  uploadedBlocks: number;
  uploadedBytes: number;
  /** Saves that became a version, and conflicts kept as copies. */
  commits: number;
  conflicts: number;
}

export type SenderState = 'online' | 'offline' | 'backoff';

/** What the drive's metrics read when scraped: cheap getters of the running mount. */
export interface DriveMetricSources {
  totals(): DriveTotals;
  /** Pending operations (files with changes to send) and the bytes their saves will upload at most. */
  queue(): { count: number; bytes: number };
  cache(): { bytes: number; maxBytes: number; blocks: number };
  /** offline: the server does not answer; backoff: online, but a change waits to be retried after a failure. */
  senderState(): SenderState;
}

/**
 * The drive's Prometheus metrics (DESIGN §11): cache hits and misses (count and bytes), block
 * fetch latency, the queue of changes still to send (depth and bytes), the sender's state, upload
 * totals, plus Node's process metrics (event-loop lag matters here: FUSE callbacks run on it).
 *
 * The hot paths only bump plain numbers (DriveTotals) and one histogram per network fetch;
 * everything else is read when scraped. Labels are bounded (states), never paths or names.
 */
export class DriveMetrics {
  readonly registry = new Registry();
  readonly fetchSeconds = new Histogram({
    name: 'stratus_drive_fetch_duration_seconds',
    help: 'Time to fetch one block from the server (request to verified bytes), by outcome (ok, failed)',
    labelNames: ['outcome'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });
  private sources: DriveMetricSources | undefined;

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const self = this;
    const totals = () => self.sources?.totals();
    // Counters mirroring a running total: each scrape adds what grew since the last.
    const mirrored = (name: string, help: string, read: (t: DriveTotals) => number) => {
      let seen = 0;
      new Counter({
        name,
        help,
        registers: [this.registry],
        collect() {
          const t = totals();
          if (!t) return;
          const now = read(t);
          if (now > seen) this.inc(now - seen);
          seen = Math.max(seen, now);
        },
      });
    };
    mirrored('stratus_drive_cache_hits_total', 'Block reads served from the local disk cache', (t) => t.cacheHits);
    mirrored('stratus_drive_cache_hit_bytes_total', 'Bytes of block reads served from the local disk cache', (t) => t.cacheHitBytes);
    mirrored('stratus_drive_cache_misses_total', 'Block loads that had to fetch the block from the server', (t) => t.cacheMisses);
    mirrored('stratus_drive_cache_miss_bytes_total', 'Bytes fetched from the server for cache misses', (t) => t.fetchedBytes);
    mirrored('stratus_drive_upload_blocks_total', 'Blocks uploaded by the sender', (t) => t.uploadedBlocks);
    mirrored('stratus_drive_upload_bytes_total', 'Bytes uploaded by the sender', (t) => t.uploadedBytes);
    mirrored('stratus_drive_commits_total', 'Saves that became a new version on the server', (t) => t.commits);
    mirrored('stratus_drive_conflicts_total', 'Saves that met a newer version and were kept as a conflicted copy', (t) => t.conflicts);
    new Gauge({
      name: 'stratus_drive_queue_depth',
      help: 'Changes waiting to be sent to the server (files and folders with pending operations)',
      registers: [this.registry],
      collect() {
        this.set(self.sources?.queue().count ?? 0);
      },
    });
    new Gauge({
      name: 'stratus_drive_queue_bytes',
      help: 'Bytes of the saves waiting to be sent (at most what they will upload)',
      registers: [this.registry],
      collect() {
        this.set(self.sources?.queue().bytes ?? 0);
      },
    });
    new Gauge({
      name: 'stratus_drive_sender_state',
      help: 'State of the sender that drains the queue: 1 for the current one of online, offline, backoff',
      labelNames: ['state'] as const,
      registers: [this.registry],
      collect() {
        const now = self.sources?.senderState();
        for (const state of ['online', 'offline', 'backoff'] as const) this.set({ state }, now === state ? 1 : 0);
      },
    });
    new Gauge({
      name: 'stratus_drive_cache_bytes',
      help: 'Bytes of blocks in the local disk cache, and its bound (--cache-size)',
      labelNames: ['kind'] as const,
      registers: [this.registry],
      collect() {
        const c = self.sources?.cache();
        this.set({ kind: 'used' }, c?.bytes ?? 0);
        this.set({ kind: 'max' }, c?.maxBytes ?? 0);
      },
    });
    new Gauge({
      name: 'stratus_drive_cache_blocks',
      help: 'Blocks in the local disk cache',
      registers: [this.registry],
      collect() {
        this.set(self.sources?.cache().blocks ?? 0);
      },
    });
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /** Connects the metrics to a running mount (until then they read zero). */
  attach(sources: DriveMetricSources): void {
    this.sources = sources;
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Prometheus text exposition (for `--metrics HOST:PORT` and the control socket's `metrics` request). */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}
