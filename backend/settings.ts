import type { ChunkingParams, ServerLimits } from '../protocol/types.js';

const KiB = 1024;
const MiB = 1024 * KiB;

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
}

/** Server-wide settings; clients read `chunking` and `limits` from GET /v1/config. */
export interface ServerSettings {
  chunking: ChunkingParams;
  limits: ServerLimits;
  events: EventSettings;
}

export const defaultSettings: ServerSettings = {
  chunking: { min: 256 * KiB, avg: 1 * MiB, max: 4 * MiB },
  limits: {
    max_block_size: 4 * MiB,
    // 100k blocks: a 100 GiB file at the average block size, 400 GiB at the maximum.
    max_manifest_blocks: 100_000,
    max_json_bytes: 16 * MiB,
    max_check_hashes: 10_000,
    max_page_size: 5_000,
  },
  events: {
    ping_interval_ms: 30_000,
    coalesce_min_ms: 20,
    coalesce_max_ms: 1_000,
    max_buffered_bytes: 64 * KiB,
  },
};

export function withSettings(overrides: { chunking?: Partial<ChunkingParams>; limits?: Partial<ServerLimits>; events?: Partial<EventSettings> } = {}): ServerSettings {
  return {
    chunking: { ...defaultSettings.chunking, ...overrides.chunking },
    limits: { ...defaultSettings.limits, ...overrides.limits },
    events: { ...defaultSettings.events, ...overrides.events },
  };
}
