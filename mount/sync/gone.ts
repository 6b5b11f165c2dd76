import { ApiError } from '../../protocol/errors.js';

/** The server no longer has the node (or the folder) a request named. */
export function isGone(err: unknown): boolean {
  return err instanceof ApiError && (err.code === 'not_found' || err.code === 'node_deleted');
}
