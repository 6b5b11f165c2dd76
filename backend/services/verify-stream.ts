import { Transform, type TransformCallback } from 'node:stream';
import { ApiError } from '../../protocol/errors.js';
import { BlockHasher } from '../../protocol/hash.js';

/**
 * Passes bytes through while hashing them with BLAKE3 and counting them; fails the stream with
 * 413 as soon as more than `maxBytes` arrive, and at the end with 400 when the hash or the
 * expected size does not match. Placed before a BlockStore's `put`, it makes the store keep
 * nothing that is not exactly the named block (invariant 3).
 */
export class VerifyStream extends Transform {
  private readonly hasher = new BlockHasher();

  constructor(
    private readonly expectedHash: string,
    private readonly maxBytes: number,
    private readonly expectedSize?: number,
  ) {
    super();
  }

  get bytes(): number {
    return this.hasher.bytes;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (this.hasher.bytes + chunk.length > this.maxBytes) {
      done(new ApiError('too_large', `block exceeds the server's maximum block size of ${this.maxBytes} bytes`));
      return;
    }
    this.hasher.update(chunk);
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    const size = this.hasher.bytes;
    if (size === 0) {
      done(new ApiError('size_mismatch', 'a block must not be empty'));
      return;
    }
    if (this.expectedSize !== undefined && size !== this.expectedSize) {
      done(new ApiError('size_mismatch', `received ${size} bytes, expected ${this.expectedSize}`));
      return;
    }
    const actual = this.hasher.digestHex();
    if (actual !== this.expectedHash) {
      done(new ApiError('hash_mismatch', `the bytes hash to ${actual}, not to ${this.expectedHash}`, { actual }));
      return;
    }
    done();
  }
}
