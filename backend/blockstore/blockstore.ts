import type { Readable } from 'node:stream';

export interface PutOptions {
  beforePublish?: () => Promise<void>;
}

/** A byte range of a block, both ends inclusive (as in HTTP Range). */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * Content-addressed block storage: the seam between the backend and its engines (local disk,
 * GCS). Engines store bytes under the id they are given; checking that the id is the BLAKE3 of
 * the bytes is the caller's job and happens in the stream passed to `put` (see verify-stream).
 */
export interface BlockStore {
  has(hash: string): Promise<boolean>;
  /**
   * Stores the bytes of `body` under `hash`. The block becomes visible only once `body` ended
   * without error; if it errors (for instance because verification failed) nothing is stored.
   * Idempotent: putting the same block twice leaves one copy. `beforePublish` runs once all the
   * bytes are received and durable, just before they become visible under `hash`; if it throws,
   * nothing is published (the GC's claim on the block row: services/block-claims.ts).
   */
  put(hash: string, body: Readable, opts?: PutOptions): Promise<void>;
  /**
   * The bytes of a block, or of a range of it. Rejects with BlockNotFoundError when absent. The
   * stream may be `Recycling`: then a consumer that is done with a chunk (its bytes written out)
   * may hand it back to be read into again.
   */
  get(hash: string, range?: ByteRange): Promise<Readable>;
  delete(hash: string): Promise<void>;
  /** Every block id held, for garbage collection. */
  list(): AsyncIterable<string>;
  /**
   * A URL that serves the whole block (Range works) without credentials for about `ttlMs`, so its
   * bytes need not pass through the backend; undefined when the engine has none (disk). Does not
   * check that the block exists.
   */
  signedUrl?(hash: string, ttlMs: number): Promise<string | undefined>;
  close(): Promise<void>;
}

/** A stream whose chunks can be handed back once the consumer no longer needs their bytes. */
export interface Recycling {
  /** `chunk` (emitted by this stream; at most once per chunk) may be overwritten from now on; ignored if it is not one of its own. */
  recycle(chunk: Buffer): void;
}

export function isRecycling(stream: Readable): stream is Readable & Recycling {
  return typeof (stream as Partial<Recycling>).recycle === 'function';
}

/** A block's stored bytes end before the range asked for: the store holds less than was recorded. */
export class BlockTruncatedError extends Error {
  constructor(readonly hash: string, readonly at: number) {
    super(`block ${hash} ends at byte ${at}, before the range asked for`);
    this.name = 'BlockTruncatedError';
  }
}

export class BlockNotFoundError extends Error {
  constructor(readonly hash: string) {
    super(`block ${hash} not found`);
    this.name = 'BlockNotFoundError';
  }
}
