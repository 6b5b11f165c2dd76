import type { BlockCache } from '../../cache/block-cache.js';
import type { StratusClient } from '../../protocol/client.js';
import type { Manifest, ServerConfig } from '../../protocol/types.js';
import type { BlockSource } from '../blocks/block-source.js';
import type { ChunkerPool } from '../chunker/pool.js';
import type { Tree } from '../node/tree.js';
import type { OpLog } from '../oplog/op-log.js';
import type { Say } from '../log.js';
import type { StateStore } from '../state/store.js';

/** Counters of what the sender did (tests and `stratus status` read them). */
export interface SendStats {
  commits: number;
  conflicts: number;
  uploadedBlocks: number;
  uploadedBytes: number;
  checkedBlocks: number;
  /** Operations sent (each create, move, delete, attribute change and commit). */
  sent: number;
}

/** What every sending step works with. */
export interface SendContext {
  client: StratusClient;
  tree: Tree;
  log: OpLog;
  store: StateStore;
  pool: ChunkerPool;
  cache: BlockCache;
  /** Blocks of versions saves were made on (cache first, verified). */
  source: BlockSource;
  config: ServerConfig;
  device: string;
  stats: SendStats;
  parallelUploads: number;
  /** The drive's log (a refusal is a warning naming the file by its path: describe.ts). */
  say: Say;
}

/** What a content entry became on the server: a version of its node, or of a conflicted copy. */
export interface CommitResult {
  ino: number;
  /** The server id of the node the version belongs to (the copy's, for a conflicted copy). */
  nodeId: string;
  manifest: Manifest;
  conflictedCopy?: string;
}
