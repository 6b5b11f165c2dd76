import type { ChunkingParams, ServerLimits } from '../protocol/types.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const DAY_MS = 24 * 60 * 60_000;

/** How `GET /v1/events` pushes hints (backend/notify/gateway.ts). Server-side only: not in /v1/config. */
export interface EventSettings {
  /** Keepalive: a ping this often; a connection that has not answered the previous one is dropped. */
  ping_interval_ms: number;
  /** Coalescing: after a hint, further ones wait this long; the window doubles while the burst goes on… */
  coalesce_min_ms: number;
  /** …up to this, and resets after a window without changes. */
  coalesce_max_ms: number;
  /** A connection with more than this queued unsent is skipped; it gets the newest seq once it drains. */
  max_buffered_bytes: number;
  /** Open connections per user (one per device is normal); more are refused with 429. */
  max_connections_per_user: number;
}

/**
 * How long a connection may take (backend/server.ts). A slow client is cut off, so many of them
 * (slowloris) cannot hold the server: headers must arrive quickly, a whole request (a 4 MiB block
 * upload: the largest) within request_timeout_ms — 300 s fits 4 MiB at ~110 kbit/s — and a
 * connection on which nothing moves for idle_timeout_ms is closed. Server-side only.
 */
export interface HttpSettings {
  headers_timeout_ms: number;
  request_timeout_ms: number;
  idle_timeout_ms: number;
  /** Between requests on a kept-alive connection. */
  keep_alive_timeout_ms: number;
  /** Open connections (WebSockets included); more are refused at once. */
  max_connections: number;
}

/**
 * Per-user limits (services/rate-limits.ts): each user may spend rate × window_s in every window
 * of window_s seconds; past that a request is answered 429 with Retry-After. The defaults are far
 * above what a drive does (a bench creates ~400 nodes/s and reads ~500 MB/s).
 */
export interface RateSettings {
  requests_per_s: number;
  upload_bytes_per_s: number;
  download_bytes_per_s: number;
  window_s: number;
}

/**
 * Trash, retention and block GC (DESIGN §3, backend/jobs/). Server-side only.
 */
export interface HistorySettings {
  /** Trashed items and versions no longer the head for longer than this are purged (`--retention`). */
  retention_ms: number;
  /** Deletes by the same device this shortly before its folder was deleted go with the folder as one trash item (rm -r deletes the files first). */
  fold_window_ms: number;
  /** A block no version names is deleted only once its last claim (upload, or a check that found it) is this old: commits on their way still find it. */
  gc_grace_ms: number;
  /** How often the purge and the GC run (one backend at a time); 0: only on demand (`stratus gc`). */
  jobs_interval_ms: number;
}

/** How blocks are downloaded from a store that can sign URLs (GCS). Server-side only. */
export interface DownloadSettings {
  /**
   * GET /v1/blocks/:hash answers 307 to a signed URL of the store, so block bytes do not pass
   * through the backends (`serve --no-signed-urls`: off, for a bucket the clients cannot reach).
   */
  signed_urls: boolean;
  /** How long such a URL lives: a block fetch starts within seconds of getting it. */
  signed_url_ttl_ms: number;
}

/** Server-wide settings; clients read `chunking` and `limits` from GET /v1/config. */
export interface ServerSettings {
  chunking: ChunkingParams;
  limits: ServerLimits;
  events: EventSettings;
  http: HttpSettings;
  rate: RateSettings;
  history: HistorySettings;
  downloads: DownloadSettings;
}

export const defaultSettings: ServerSettings = {
  chunking: { min: 256 * KiB, avg: 1 * MiB, max: 4 * MiB },
  limits: {
    max_block_size: 4 * MiB,
    // 100k blocks: a 100 GiB file at the average block size, 400 GiB at the maximum.
    max_manifest_blocks: 100_000,
    manifest_free_blocks: 64,
    min_bytes_per_block: (256 * KiB) / 4,
    // Small bodies are parsed on the event loop: 1 MiB holds a check of max_check_hashes.
    max_json_bytes: 1 * MiB,
    // Commits are parsed in a worker thread (services/commit-body-pool.ts).
    max_commit_json_bytes: 16 * MiB,
    max_check_hashes: 10_000,
    max_page_size: 5_000,
    max_batch_ops: 1_000,
  },
  events: {
    ping_interval_ms: 30_000,
    coalesce_min_ms: 20,
    coalesce_max_ms: 1_000,
    max_buffered_bytes: 64 * KiB,
    max_connections_per_user: 64,
  },
  http: {
    headers_timeout_ms: 20_000,
    request_timeout_ms: 300_000,
    idle_timeout_ms: 60_000,
    keep_alive_timeout_ms: 65_000,
    max_connections: 10_000,
  },
  rate: {
    requests_per_s: 2_000,
    upload_bytes_per_s: 1024 * MiB,
    download_bytes_per_s: 2048 * MiB,
    window_s: 10,
  },
  history: {
    retention_ms: 30 * DAY_MS,
    fold_window_ms: 10 * 60_000,
    gc_grace_ms: 60 * 60_000,
    jobs_interval_ms: 60 * 60_000,
  },
  downloads: {
    signed_urls: true,
    signed_url_ttl_ms: 5 * 60_000,
  },
};

export type SettingsOverrides = { [K in keyof ServerSettings]?: Partial<ServerSettings[K]> };

export function withSettings(overrides: SettingsOverrides = {}): ServerSettings {
  const chunking = { ...defaultSettings.chunking, ...overrides.chunking };
  return {
    chunking,
    // Blocks a client cuts are at least chunking.min (but the last): a quarter of it is the floor of a manifest's average.
    limits: { ...defaultSettings.limits, min_bytes_per_block: Math.floor(chunking.min / 4), ...overrides.limits },
    events: { ...defaultSettings.events, ...overrides.events },
    http: { ...defaultSettings.http, ...overrides.http },
    rate: { ...defaultSettings.rate, ...overrides.rate },
    history: { ...defaultSettings.history, ...overrides.history },
    downloads: { ...defaultSettings.downloads, ...overrides.downloads },
  };
}
