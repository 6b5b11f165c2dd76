import { constants } from 'node:os';
import { ApiError } from '../../protocol/errors.js';
import { isTransientFailure } from '../../protocol/transient.js';

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

/** Network trouble (no answer, reset, timeout, 5xx, 429): worth retrying later; a 4xx answer or a file-system refusal is not. */
export function isTransient(err: unknown): boolean {
  return !(err instanceof FsError) && isTransientFailure(err);
}
