import type Koa from 'koa';
import getRawBody from 'raw-body';
import { ApiError } from '../../protocol/errors.js';
import { parseJsonBody } from '../services/json-text.js';

/**
 * The bytes of a JSON request body, read with a byte limit: 413 past the limit (without buffering
 * the rest), 415 for another content type. An empty body is undefined.
 */
export async function readJsonBytes(ctx: Koa.Context, limit: number, limitName = 'max_json_bytes'): Promise<Buffer | undefined> {
  const type = ctx.get('Content-Type');
  const length = ctx.get('Content-Length');
  if (length !== '' && Number(length) > limit) throw tooLarge(limit, limitName);
  let bytes: Buffer;
  try {
    bytes = await getRawBody(ctx.req, { limit });
  } catch (err) {
    if ((err as { type?: string }).type === 'entity.too.large') throw tooLarge(limit, limitName);
    throw new ApiError('bad_request', 'could not read the request body');
  }
  if (bytes.length === 0) return undefined;
  if (type && !/^application\/(.+\+)?json\b/i.test(type)) {
    throw new ApiError('unsupported_media_type', 'request body must be application/json');
  }
  return bytes;
}

/** A JSON request body (see readJsonBytes), parsed (services/json-text.ts: UTF-8, depth, syntax). */
export async function readJson(ctx: Koa.Context, limit: number): Promise<unknown> {
  const bytes = await readJsonBytes(ctx, limit);
  return bytes === undefined ? undefined : parseJsonBody(bytes);
}

function tooLarge(limit: number, limitName: string): ApiError {
  return new ApiError('too_large', `request body exceeds ${limit} bytes`, { [limitName]: limit });
}
