import { ApiError } from '../../protocol/errors.js';
import { isBlockHash } from '../../protocol/hash.js';

/**
 * The strict parsers of what a request names in its path and query: every id, number and hash
 * goes through one of these before it reaches a query. One spelling per value — no hex, exponent,
 * sign, fraction, leading zeros, blanks or repeated parameters — so `versions/1e3` is not version
 * 1000 and `devices/0x5` is not device 5.
 */

const WHOLE_RE = /^(?:0|[1-9][0-9]{0,15})$/;
const NODE_ID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Opaque public ids (devices, users): 16 base64url characters (96 random bits). */
const PUBLIC_ID_RE = /^[A-Za-z0-9_-]{16}$/;

/** A whole number written in plain decimal digits, at least `min`; 400 naming `field` otherwise. */
export function parseWhole(raw: unknown, field: string, min = 0): number {
  const n = typeof raw === 'string' && WHOLE_RE.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < min) {
    throw new ApiError('bad_request', `${field} must be a whole number ≥ ${min} in decimal digits`);
  }
  return n;
}

/** `raw` parsed as a whole number when given, `fallback` when absent. */
export function optionalWhole(raw: unknown, field: string, fallback: number, min = 0): number {
  return raw === undefined ? fallback : parseWhole(raw, field, min);
}

/** A version number (1, 2, …) or `head`. */
export function parseVersion(raw: unknown, head: number, field = 'version'): number {
  if (raw === 'head') return head;
  return parseWhole(raw, `${field} (or "head")`, 1);
}

/** How many items a page may hold: `limit` when given (capped at `max`), else `fallback`. */
export function pageLimit(raw: unknown, max: number, fallback = 1000): number {
  return Math.min(optionalWhole(raw, 'limit', fallback, 1), max);
}

/** Rejects anything that is not a node id with 400 before it reaches a query. */
export function assertNodeId(value: unknown, field = 'id'): asserts value is string {
  if (typeof value !== 'string' || !NODE_ID_RE.test(value)) {
    throw new ApiError('bad_id', `${field} must be a node id (a lowercase UUID)`);
  }
}

/** An opaque public id (a device's). */
export function assertPublicId(value: unknown, field = 'id'): asserts value is string {
  if (typeof value !== 'string' || !PUBLIC_ID_RE.test(value)) {
    throw new ApiError('bad_id', `${field} must be an id as the server gave it (16 characters: letters, digits, "-", "_")`);
  }
}

/** A block id: 64 lowercase hex characters. */
export function assertHash(hash: unknown): asserts hash is string {
  if (!isBlockHash(hash)) throw new ApiError('bad_hash', 'a block id is 64 lowercase hex characters (BLAKE3-256)');
}
