import { constants } from 'node:os';
import { ApiError } from '../../protocol/errors.js';

export type Errno = keyof typeof constants.errno;

/** A file-system error with its errno name; the FUSE adapter answers it as -errno. */
export class FsError extends Error {
  constructor(
    readonly code: Errno,
    message?: string,
  ) {
    super(message ?? code);
    this.name = 'FsError';
  }
  get errno(): number {
    return constants.errno[this.code];
  }
}

const apiToErrno: Partial<Record<string, Errno>> = {
  not_found: 'ENOENT',
  node_deleted: 'ENOENT',
  exists: 'EEXIST',
  not_a_directory: 'ENOTDIR',
  is_a_directory: 'EISDIR',
  not_empty: 'ENOTEMPTY',
  forbidden: 'EACCES',
  unauthorized: 'EACCES',
  bad_name: 'EINVAL',
  invalid_move: 'EINVAL',
  too_large: 'EFBIG',
};

/** The errno a failure becomes at the FUSE boundary: file-system errors keep theirs, the rest is EIO. */
export function toErrno(err: unknown): number {
  if (err instanceof FsError) return err.errno;
  if (err instanceof ApiError) return constants.errno[apiToErrno[err.code] ?? 'EIO'];
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  // The local disk's own limits (staging files), as the disk answered them.
  if (code === 'ENOSPC' || code === 'EFBIG' || code === 'EDQUOT') return constants.errno[code];
  return constants.errno.EIO;
}

/** How long the server asked us to wait before trying again (Retry-After of a 429, 503 or 507), in ms; 0 when it did not say. */
export function retryAfterMs(err: unknown): number {
  const seconds = err instanceof ApiError ? err.extra.retry_after_s : undefined;
  return typeof seconds === 'number' && Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 0;
}

/** Network trouble (no answer, reset, timeout, 5xx, 429): worth retrying later; a 4xx answer is not. */
export function isTransient(err: unknown): boolean {
  if (err instanceof ApiError) return err.status >= 500 || err.status === 429;
  return !(err instanceof FsError);
}
