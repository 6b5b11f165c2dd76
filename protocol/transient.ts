import { ApiError } from './errors.js';

/** Network trouble (no answer, reset, timeout, 5xx, 429): worth retrying later; a 4xx answer is not. */
export function isTransientFailure(err: unknown): boolean {
  if (err instanceof ApiError) return err.status >= 500 || err.status === 429;
  return true;
}

/** How long the server asked us to wait before trying again (Retry-After of a 429, 503 or 507), in ms; 0 when it did not say. */
export function retryAfterMs(err: unknown): number {
  const seconds = err instanceof ApiError ? err.extra.retry_after_s : undefined;
  return typeof seconds === 'number' && Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 0;
}

/** A refusal the server will give again however often it is asked (a 4xx answer). */
export function isRefusal(err: unknown): err is ApiError {
  return err instanceof ApiError && !isTransientFailure(err);
}
