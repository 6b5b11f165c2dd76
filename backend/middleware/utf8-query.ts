import type Koa from 'koa';
import { ApiError } from '../../protocol/errors.js';

/**
 * Refuses (400) a query string whose percent-escapes are not valid UTF-8: Koa's parser would
 * replace the bad bytes with U+FFFD and a handler would act on a value the client never sent.
 */
export function utf8QueryMiddleware(): Koa.Middleware {
  return async (ctx, next) => {
    const query = ctx.querystring;
    if (query !== '' && query.includes('%')) {
      try {
        decodeURIComponent(query.replace(/\+/g, ' '));
      } catch {
        throw new ApiError('bad_request', 'the query string is not valid percent-encoded UTF-8');
      }
    }
    await next();
  };
}
