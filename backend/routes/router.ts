import Router from '@koa/router';

/**
 * Every router of the app: paths match exactly as written — case-sensitive, a trailing slash is
 * another path — so a route answers to one spelling only. Authentication does not rely on this
 * (app.ts authenticates everything that is not listed public); it keeps `/V1/…` or `/v1/x/`
 * from reaching a handler under a name the route table does not show.
 */
export function newRouter(): Router {
  return new Router({ sensitive: true, strict: true });
}
