import type Koa from 'koa';
import getRawBody from 'raw-body';
import { ApiError } from '../../protocol/errors.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The bytes of a JSON request body, read with a byte limit: 413 past the limit (without buffering
 * the rest), 415 for another content type. An empty body is undefined.
 */
export async function readJsonBytes(ctx: Koa.Context, limit: number): Promise<Buffer | undefined> {
  const type = ctx.get('Content-Type');
  const length = ctx.get('Content-Length');
  if (length !== '' && Number(length) > limit) throw tooLarge(limit);
  let bytes: Buffer;
  try {
    bytes = await getRawBody(ctx.req, { limit });
  } catch (err) {
    if ((err as { type?: string }).type === 'entity.too.large') throw tooLarge(limit);
    throw new ApiError('bad_request', 'could not read the request body');
  }
  if (bytes.length === 0) return undefined;
  if (type && !/^application\/(.+\+)?json\b/i.test(type)) {
    throw new ApiError('unsupported_media_type', 'request body must be application/json');
  }
  return bytes;
}

/** A JSON request body (see readJsonBytes), parsed: 400 for bytes that are not UTF-8 (never replaced and stored) or malformed JSON. */
export async function readJson(ctx: Koa.Context, limit: number): Promise<unknown> {
  const bytes = await readJsonBytes(ctx, limit);
  if (bytes === undefined) return undefined;
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new ApiError('malformed_json', 'the request body is not valid UTF-8');
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new ApiError('malformed_json', `malformed JSON: ${(err as Error).message}`);
  }
}

function tooLarge(limit: number): ApiError {
  return new ApiError('too_large', `request body exceeds ${limit} bytes`, { max_json_bytes: limit });
}
