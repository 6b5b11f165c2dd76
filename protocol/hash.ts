import { createHash } from 'blake3';

/** A block id: lowercase hex BLAKE3-256 of the bytes (DESIGN §2). */
export const HASH_RE = /^[0-9a-f]{64}$/;

export function isBlockHash(value: unknown): value is string {
  return typeof value === 'string' && HASH_RE.test(value);
}

export function blake3Hex(data: Uint8Array): string {
  return createHash().update(data).digest().toString('hex');
}

/** Incremental BLAKE3 for streams. */
export class BlockHasher {
  private readonly hash = createHash();
  bytes = 0;

  update(chunk: Uint8Array): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
  }

  digestHex(): string {
    return this.hash.digest().toString('hex');
  }
}
