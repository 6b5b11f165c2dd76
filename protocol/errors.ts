/**
 * The error contract of the API: every failure is `{error: {code, message, ...}}`
 * with a fitting HTTP status. Both sides share the codes.
 */
export const ErrorCodes = {
  bad_request: 400,
  bad_name: 400,
  bad_target: 400,
  bad_hash: 400,
  bad_id: 400,
  bad_manifest: 400,
  malformed_json: 400,
  hash_mismatch: 400,
  size_mismatch: 400,
  invalid_move: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  exists: 409,
  not_a_directory: 409,
  is_a_directory: 409,
  not_a_file: 409,
  not_empty: 409,
  nested_share: 409,
  stale_version: 409,
  missing_blocks: 409,
  node_deleted: 409,
  too_large: 413,
  range_not_satisfiable: 416,
  unsupported_media_type: 415,
  too_many_requests: 429,
  internal: 500,
  block_corrupt: 500,
  unavailable: 503,
  insufficient_storage: 507,
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export interface ErrorBody {
  error: { code: ErrorCode; message: string; [extra: string]: unknown };
}

/** An error that crosses the API: thrown by services, rendered by the backend, raised again by the client. */
export class ApiError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly extra: Record<string, unknown> = {},
    status?: number,
  ) {
    super(message);
    this.name = 'ApiError';
    this.status = status ?? ErrorCodes[code];
  }

  toBody(): ErrorBody {
    return { error: { ...this.extra, code: this.code, message: this.message } };
  }
}

export function isErrorBody(value: unknown): value is ErrorBody {
  if (typeof value !== 'object' || value === null) return false;
  const error = (value as { error?: unknown }).error;
  return typeof error === 'object' && error !== null && typeof (error as { code?: unknown }).code === 'string';
}
