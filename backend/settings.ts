import type { ChunkingParams, ServerLimits } from '../protocol/types.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Server-wide settings that clients read from GET /v1/config. */
export interface ServerSettings {
  chunking: ChunkingParams;
  limits: ServerLimits;
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
};

export function withSettings(overrides: { chunking?: Partial<ChunkingParams>; limits?: Partial<ServerLimits> } = {}): ServerSettings {
  return {
    chunking: { ...defaultSettings.chunking, ...overrides.chunking },
    limits: { ...defaultSettings.limits, ...overrides.limits },
  };
}
