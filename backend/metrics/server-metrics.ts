import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** What the gauges read when scraped (set once the parts they read exist). */
export interface ServerGaugeSources {
  /** Open WebSocket connections of GET /v1/events. */
  connections?: () => number;
  /** The metadata database's connection pool. */
  pool?: () => { pendingAcquires: number; used: number; free: number; max: number };
}

/**
 * The backend's Prometheus metrics (DESIGN §11): the RED metrics of commits, the block traffic and
 * what dedup saves, how late change hints go out, and the saturation of WebSocket connections and
 * of the database pool; plus Node's default process metrics. One registry per server (several run
 * in one test process), never prom-client's global one.
 *
 * Labels never carry a user, a device, a path or a node id: only bounded sets (error codes,
 * HTTP statuses, outcomes), so /metrics tells an anonymous scraper volumes and latencies only.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly sources: ServerGaugeSources = {};

  /** Commits that became a version (POST …/versions and restores). */
  readonly commits = new Counter({ name: 'stratus_commits_total', help: 'Commits that became a new version (saves and restores)', registers: [this.registry] });
  readonly commitFailures = new Counter({
    name: 'stratus_commit_failures_total',
    help: 'Commits refused or failed, by error code (stale_version = a conflict, missing_blocks, …) and HTTP status',
    labelNames: ['reason', 'status'] as const,
    registers: [this.registry],
  });
  readonly commitSeconds = new Histogram({
    name: 'stratus_commit_duration_seconds',
    help: 'Time to answer a commit, from the request to the reply, by outcome (ok, failed)',
    labelNames: ['outcome'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  /** Logical bytes of the versions committed: with blockBytesIn, what dedup saves. */
  readonly committedBytes = new Counter({ name: 'stratus_committed_bytes_total', help: 'Sizes of the versions committed (what clients saved, before dedup)', registers: [this.registry] });
  readonly blockBytesIn = new Counter({ name: 'stratus_block_bytes_in_total', help: 'Block bytes received and stored by PUT /v1/blocks/:hash (verified uploads)', registers: [this.registry] });
  readonly blocksIn = new Counter({ name: 'stratus_blocks_in_total', help: 'Blocks uploaded (verified PUT /v1/blocks/:hash)', registers: [this.registry] });
  readonly blockBytesOut = new Counter({ name: 'stratus_block_bytes_out_total', help: 'Block bytes served by GET /v1/blocks/:hash (whole blocks and ranges)', registers: [this.registry] });
  readonly blockRedirects = new Counter({ name: 'stratus_block_redirects_total', help: 'Block downloads answered with a signed URL of the store (bytes not served here)', registers: [this.registry] });
  readonly blockChecks = new Counter({
    name: 'stratus_block_check_hashes_total',
    help: 'Hashes asked about by POST /v1/blocks/check: present (dedup: not uploaded again) or missing (to upload)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly hintLag = new Histogram({
    name: 'stratus_notification_lag_seconds',
    help: 'Time from a commit to the change hint sent on a WebSocket that can see it (coalescing included)',
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly poolAcquireSeconds = new Histogram({
    name: 'stratus_db_pool_acquire_seconds',
    help: 'Time a query waited for a connection of the metadata database pool',
    buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [this.registry],
  });

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const sources = this.sources;
    new Gauge({
      name: 'stratus_websocket_connections',
      help: 'Open WebSocket connections of GET /v1/events',
      registers: [this.registry],
      collect() {
        this.set(sources.connections?.() ?? 0);
      },
    });
    new Gauge({
      name: 'stratus_db_pool_connections',
      help: 'Connections of the metadata database pool, by state (used, free, max)',
      labelNames: ['state'] as const,
      registers: [this.registry],
      collect() {
        const pool = sources.pool?.();
        for (const state of ['used', 'free', 'max'] as const) this.set({ state }, pool?.[state] ?? 0);
      },
    });
    new Gauge({
      name: 'stratus_db_pool_pending_acquires',
      help: 'Queries waiting for a connection of the metadata database pool (saturation)',
      registers: [this.registry],
      collect() {
        this.set(sources.pool?.().pendingAcquires ?? 0);
      },
    });
    const committed = this.committedBytes;
    const stored = this.blockBytesIn;
    new Gauge({
      name: 'stratus_dedup_ratio',
      help: 'Bytes committed per block byte uploaded since the server started (stratus_committed_bytes_total / stratus_block_bytes_in_total; 1 = no dedup)',
      registers: [this.registry],
      async collect() {
        const [c, s] = await Promise.all([committed.get(), stored.get()]);
        const cv = c.values[0]?.value ?? 0;
        const sv = s.values[0]?.value ?? 0;
        // Nothing uploaded yet: 1 before any commit, +Inf once commits reused only blocks already stored.
        this.set(sv > 0 ? cv / sv : cv > 0 ? Infinity : 1);
      },
    });
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Prometheus text exposition. */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}
