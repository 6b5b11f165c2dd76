import Koa from 'koa';
import type Router from '@koa/router';
import type { Logger } from 'pino';
import { metricsMiddleware } from './metrics/http-metrics.js';
import type { ServerMetrics } from './metrics/server-metrics.js';
import { authMiddleware } from './middleware/auth.js';
import { errorMiddleware } from './middleware/errors.js';
import { utf8QueryMiddleware } from './middleware/utf8-query.js';
import { accountRoutes } from './routes/account.js';
import { blockRoutes } from './routes/blocks.js';
import { changeRoutes } from './routes/changes.js';
import { eventRoutes } from './routes/events.js';
import { historyRoutes } from './routes/history.js';
import { linkPageRoutes } from './routes/link-pages.js';
import { metricsRoutes } from './routes/metrics.js';
import { nodeRoutes } from './routes/nodes.js';
import { shareRoutes } from './routes/shares.js';
import { trashRoutes } from './routes/trash.js';
import { newRouter } from './routes/router.js';
import { versionRoutes } from './routes/versions.js';
import type { Backend } from './services/context.js';

/** The routes anyone may call without a token: a route is public only by being listed here. */
export function publicRoutes(backend: Backend, metrics?: ServerMetrics): Router {
  const open = newRouter();
  // Prometheus scrapes without a token (served here unless `serve --metrics` says otherwise).
  if (metrics) open.use(metricsRoutes(metrics).routes());
  open.get('/healthz', async (ctx) => {
    await backend.db.raw('SELECT 1');
    ctx.body = { ok: true };
  });
  // Link shares (`/s/TOKEN…`): the token in the URL is the credential.
  open.use(linkPageRoutes(backend).routes());
  return open;
}

/** Every route that needs a device token (all of /v1). */
export function apiRoutes(backend: Backend): Router {
  const api = newRouter();
  for (const routes of [accountRoutes, nodeRoutes, shareRoutes, versionRoutes, blockRoutes, changeRoutes, historyRoutes, trashRoutes, eventRoutes]) {
    api.use(routes(backend).routes());
  }
  return api;
}

/**
 * The HTTP application: error shaping, then bearer auth in front of every request that is not a
 * listed public route — whatever its path, routed or not, however it is spelled — so an
 * unauthenticated caller learns nothing, not even which routes and methods exist (invariant 8).
 */
export function createApp(backend: Backend, log: Logger, metrics?: { counts: ServerMetrics; route: boolean }): Koa {
  const app = new Koa();
  app.proxy = false;
  app.silent = true;
  // First: it sees each reply as the client gets it, error shaping included.
  if (metrics) app.use(metricsMiddleware(metrics.counts));
  app.use(errorMiddleware(log));
  app.use(utf8QueryMiddleware());

  const open = publicRoutes(backend, metrics?.route ? metrics.counts : undefined);
  const auth = authMiddleware(backend);
  app.use((ctx, next) => (open.match(ctx.path, ctx.method).route ? next() : auth(ctx, next)));
  app.use(open.routes());
  app.use(open.allowedMethods());

  const api = apiRoutes(backend);
  app.use(api.routes());
  // 405 / 501 with an Allow header; errorMiddleware gives them the error body.
  app.use(api.allowedMethods());
  return app;
}
