import crypto from 'node:crypto';
import { ApiError } from '../../protocol/errors.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function newNodeId(): string {
  return crypto.randomUUID();
}

/** Rejects anything that is not a node id with 400 before it reaches a query. */
export function assertNodeId(value: unknown, field = 'id'): asserts value is string {
  if (typeof value !== 'string' || !UUID_RE.test(value)) {
    throw new ApiError('bad_id', `${field} must be a node id (a lowercase UUID)`);
  }
}
