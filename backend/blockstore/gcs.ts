import crypto from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { Storage, type Bucket, type File, type StorageOptions } from '@google-cloud/storage';
import { HASH_RE } from '../../protocol/hash.js';
import { BlockNotFoundError, BlockTruncatedError, type BlockStore, type ByteRange, type PutOptions } from './blockstore.js';

/** Object names listed per request by `list`. */
const LIST_PAGE = 1000;
/** Longest lifetime of a signed URL that V4 signing allows. */
const MAX_SIGNED_TTL_MS = 7 * 24 * 3600 * 1000;
/** Temp objects older than this when a store opens are leftovers of a put that died with its process. */
const STALE_TEMP_MS = 3600 * 1000;

export interface GcsLocation {
  bucket: string;
  /** '' or a prefix ending in '/'. */
  prefix: string;
}

/** `gs://BUCKET[/prefix]` → bucket and normalized prefix. */
export function parseGcsUrl(url: string): GcsLocation {
  const m = /^gs:\/\/([^/]+)(?:\/(.*))?$/.exec(url);
  if (!m) throw new Error(`not a gs:// URL: ${url}`);
  const bucket = m[1]!;
  if (!/^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/.test(bucket)) throw new Error(`not a bucket name: ${bucket}`);
  const trimmed = (m[2] ?? '').replace(/^\/+|\/+$/g, '');
  return { bucket, prefix: trimmed ? `${trimmed}/` : '' };
}

export interface GcsOpenOptions {
  /** Passed to the client (projectId, keyFilename, credentials…); by default it finds credentials the ordinary Google way. */
  storage?: StorageOptions;
  /** Temp objects older than this are removed when the store opens (default 1 h; Infinity: keep). */
  staleTempMs?: number;
  /** Object names asked for per listing request (default 1000; small in tests, to exercise paging). */
  listPageSize?: number;
}

function isNotFound(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 404;
}

/**
 * Blocks as objects `PREFIX/blocks/<hash>` in a Google Cloud Storage bucket (DESIGN §8).
 *
 * Credentials the ordinary Google way: application default credentials (the metadata server on
 * GCP, `gcloud auth application-default login`), a service-account key file named by
 * GOOGLE_APPLICATION_CREDENTIALS, or — for an emulator — STORAGE_EMULATOR_HOST (then requests are
 * not authenticated; a key is still needed to sign URLs).
 *
 * A put streams the (verifying) body into a temp object `PREFIX/tmp/<hash>.<random>` in one
 * request (a single multipart upload, never resumable: blocks are ≤ 4 MiB, and a multi-chunk
 * resumable upload is silently truncated by the emulator), with the client's crc32c check of what
 * the server stored. Only once the body ended cleanly and the upload is acknowledged does it run
 * `beforePublish`, then copy the temp object to the final name (a server-side copy of bytes
 * already verified) and delete the temp. A body that errors aborts the upload request: no object
 * is created, nothing appears under the final name, and the temp name is deleted anyway in case.
 * Two puts of one hash use different temp names and each publishes the same verified bytes: the
 * final object is whole whichever copy lands last. Nothing relies on preconditions
 * (ifGenerationMatch) — the emulator ignores them.
 */
export class GcsBlockStore implements BlockStore {
  private constructor(
    private readonly storage: Storage,
    private readonly bucket: Bucket,
    readonly location: GcsLocation,
    private readonly listPageSize: number,
  ) {}

  static async open(url: string, opts: GcsOpenOptions = {}): Promise<GcsBlockStore> {
    const location = parseGcsUrl(url);
    const storage = new Storage(opts.storage);
    const store = new GcsBlockStore(storage, storage.bucket(location.bucket), location, opts.listPageSize ?? LIST_PAGE);
    // Also the first request: a missing bucket or missing credentials show here, at start.
    try {
      await store.removeStaleTemps(opts.staleTempMs ?? STALE_TEMP_MS);
    } catch (err) {
      throw new Error(`cannot use ${url} as the block store: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    return store;
  }

  private fileOf(hash: string): File {
    if (!HASH_RE.test(hash)) throw new Error(`not a block id: ${hash}`);
    return this.bucket.file(`${this.location.prefix}blocks/${hash}`);
  }

  /** Where temp objects live (for tests and tools). */
  get tempPrefix(): string {
    return `${this.location.prefix}tmp/`;
  }

  async has(hash: string): Promise<boolean> {
    const [exists] = await this.fileOf(hash).exists();
    return exists;
  }

  async put(hash: string, body: Readable, opts: PutOptions = {}): Promise<void> {
    const final = this.fileOf(hash);
    const tmp = this.bucket.file(`${this.tempPrefix}${hash}.${crypto.randomBytes(6).toString('hex')}`);
    try {
      await pipeline(
        body,
        tmp.createWriteStream({
          resumable: false,
          validation: 'crc32c',
          contentType: 'application/octet-stream',
        }),
      );
      await opts.beforePublish?.();
      // Content-addressed: the same name always holds the same bytes, so an overwrite by a
      // concurrent put of the same block (same verified bytes) is harmless; and always copying
      // (rather than skipping a block already there) repairs a stored copy found corrupt.
      await tmp.copy(final);
    } finally {
      await tmp.delete({ ignoreNotFound: true }).catch(() => undefined);
    }
  }

  async get(hash: string, range?: ByteRange): Promise<Readable> {
    const file = this.fileOf(hash);
    // One metadata read first: a missing block (or one shorter than the range, which the caller
    // promised the client) is an error here rather than in the middle of a response. The read is
    // not pinned to that generation: a put of the same block may replace the object meanwhile
    // (same bytes, new generation), and a pinned read would then find nothing.
    let size: number;
    try {
      const [meta] = await file.getMetadata();
      size = Number(meta.size);
    } catch (err) {
      if (isNotFound(err)) throw new BlockNotFoundError(hash);
      throw err;
    }
    if (range && size <= range.end) throw new BlockTruncatedError(hash, size);
    if (range) return file.createReadStream({ start: range.start, end: range.end, validation: false });
    // A whole block: the client checks the bytes against the object's crc32c as they arrive.
    return file.createReadStream({ validation: 'crc32c' });
  }

  async delete(hash: string): Promise<void> {
    await this.fileOf(hash).delete({ ignoreNotFound: true });
  }

  async *list(): AsyncIterable<string> {
    const prefix = `${this.location.prefix}blocks/`;
    let pageToken: string | undefined;
    do {
      const [files, next] = await this.bucket.getFiles({ prefix, autoPaginate: false, maxResults: this.listPageSize, pageToken, fields: 'items(name),nextPageToken' });
      for (const f of files) {
        const name = f.name.slice(prefix.length);
        if (HASH_RE.test(name)) yield name;
      }
      pageToken = (next as { pageToken?: string } | null | undefined)?.pageToken;
    } while (pageToken);
  }

  /**
   * A V4 signed URL that reads the whole block (HTTP Range works on it) for `ttlMs`, signed with
   * the service account's key (locally with a key file; through the IAM signBlob API with
   * application default credentials on GCP). Does not check that the block exists.
   */
  async signedUrl(hash: string, ttlMs: number): Promise<string> {
    if (!(ttlMs > 0 && ttlMs <= MAX_SIGNED_TTL_MS)) throw new Error(`a signed URL lives between 1 ms and 7 days, not ${ttlMs} ms`);
    const [url] = await this.fileOf(hash).getSignedUrl({ version: 'v4', action: 'read', expires: Date.now() + ttlMs });
    return url;
  }

  /** Removes temp objects older than `maxAgeMs`: what puts interrupted by a crash left (other instances' puts in flight are younger). */
  async removeStaleTemps(maxAgeMs: number): Promise<number> {
    if (maxAgeMs === Infinity) return 0;
    const cutoff = Date.now() - maxAgeMs;
    let removed = 0;
    let pageToken: string | undefined;
    do {
      const [files, next] = await this.bucket.getFiles({ prefix: this.tempPrefix, autoPaginate: false, maxResults: this.listPageSize, pageToken });
      for (const f of files) {
        const created = Date.parse(String(f.metadata.timeCreated ?? ''));
        if (Number.isFinite(created) && created >= cutoff) continue;
        await f.delete({ ignoreNotFound: true });
        removed++;
      }
      pageToken = (next as { pageToken?: string } | null | undefined)?.pageToken;
    } while (pageToken);
    return removed;
  }

  async close(): Promise<void> {}
}
