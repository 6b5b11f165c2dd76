import type Koa from 'koa';
import type { Logger } from 'pino';
import { ApiError } from '../../protocol/errors.js';

/**
 * Turns every failure into the one error shape `{error: {code, message, ...}}`. ApiErrors carry
 * their status; anything else is a 500 whose details go to the log, not to the client.
 */
export function errorMiddleware(log: Logger): Koa.Middleware {
  return async (ctx, next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) throw new ApiError('not_found', `no route for ${ctx.method} ${ctx.path}`);
      if (ctx.status === 405 && ctx.body === undefined) throw new ApiError('bad_request', `${ctx.method} is not allowed on ${ctx.path}`, {}, 405);
      if (ctx.status === 501 && ctx.body === undefined) throw new ApiError('bad_request', `${ctx.method} is not implemented`, {}, 501);
    } catch (err) {
      const apiError = toApiError(err);
      if (apiError.code === 'insufficient_storage') log.error({ code: (err as { code?: unknown }).code, method: ctx.method, path: ctx.path }, 'out of storage space');
      else if (apiError.status >= 500) log.error({ err, method: ctx.method, path: ctx.path }, 'request failed');
      ctx.status = apiError.status;
      ctx.body = apiError.toBody();
      if (apiError.status === 401) {
        ctx.set('WWW-Authenticate', 'Bearer realm="stratus"');
        // An unauthenticated client does not keep a connection: a few kept-alive ones sending a
        // request now and then would otherwise hold the server's connection slots.
        ctx.set('Connection', 'close');
      }
      if (typeof apiError.extra.retry_after_s === 'number') ctx.set('Retry-After', String(apiError.extra.retry_after_s));
      if (apiError.status === 416 && typeof apiError.extra.size === 'number') ctx.set('Content-Range', `bytes */${apiError.extra.size}`);
      // A refused upload may leave bytes unread on the socket: close it rather than parse them as a request.
      if (!ctx.req.complete) ctx.set('Connection', 'close');
    }
  };
}

/** How long a client should wait before trying again after the server ran out of space. */
const FULL_RETRY_AFTER_S = 60;

/** Out of space: a full disk (ENOSPC), a quota (EDQUOT), SQLite's or PostgreSQL's "disk full". */
function isOutOfSpace(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL' || code === '53100';
}

function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (isOutOfSpace(err)) {
    return new ApiError('insufficient_storage', 'the server is out of storage space; nothing was stored, try again later', { retry_after_s: FULL_RETRY_AFTER_S });
  }
  const e = err as { status?: number; expose?: boolean; message?: string };
  if (e?.status === 405) return new ApiError('bad_request', e.message ?? 'method not allowed', {}, 405);
  if (e?.status === 501) return new ApiError('bad_request', e.message ?? 'not implemented', {}, 501);
  return new ApiError('internal', 'internal server error');
}
