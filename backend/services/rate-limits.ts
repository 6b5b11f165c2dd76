import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import { ApiError } from '../../protocol/errors.js';
import type { RateSettings } from '../settings.js';

/**
 * Per-user limits on requests and on block bytes up and down (rate-limiter-flexible's in-memory
 * limiter: each user may spend `rate × window_s` in every window of `window_s` seconds). Past a
 * limit the request is refused with 429 and Retry-After (the seconds until the window resets),
 * before any work or transfer is done. Kept per backend process: N backends behind a balancer
 * allow up to N times as much, which is fine for limits meant to stop abuse, not to bill.
 */
export class RateLimits {
  private readonly requests: Bucket;
  private readonly uploads: Bucket;
  private readonly downloads: Bucket;

  constructor(settings: RateSettings) {
    this.requests = bucket(settings.requests_per_s, settings.window_s, 'requests');
    this.uploads = bucket(settings.upload_bytes_per_s, settings.window_s, 'upload bytes');
    this.downloads = bucket(settings.download_bytes_per_s, settings.window_s, 'download bytes');
  }

  /** One request of this user (`count`: what a batch of that many operations costs). */
  request(userId: number, count = 1): Promise<void> {
    return take(this.requests, userId, count);
  }

  /** Before an upload of `bytes` is received. */
  upload(userId: number, bytes: number): Promise<void> {
    return take(this.uploads, userId, bytes);
  }

  /** Before a download of `bytes` is sent. */
  download(userId: number, bytes: number): Promise<void> {
    return take(this.downloads, userId, bytes);
  }
}

interface Bucket {
  limiter: RateLimiterMemory;
  capacity: number;
  what: string;
}

function bucket(perSecond: number, windowS: number, what: string): Bucket {
  const capacity = Math.max(1, Math.round(perSecond * windowS));
  return { limiter: new RateLimiterMemory({ points: capacity, duration: windowS }), capacity, what };
}

async function take(b: Bucket, userId: number, amount: number): Promise<void> {
  try {
    // One transfer larger than a whole window's budget would otherwise never pass: it costs the window.
    await b.limiter.consume(userId, Math.min(Math.max(amount, 0), b.capacity));
  } catch (err) {
    if (!(err instanceof RateLimiterRes)) throw err;
    const retryAfterS = Math.max(1, Math.ceil(err.msBeforeNext / 1000));
    throw new ApiError('too_many_requests', `too many ${b.what} for this user; retry in ${retryAfterS} s`, { retry_after_s: retryAfterS });
  }
}
