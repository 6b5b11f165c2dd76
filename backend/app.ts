import Koa from 'koa';
import Router from '@koa/router';
import type { Logger } from 'pino';
import { authMiddleware } from './middleware/auth.js';
import { errorMiddleware } from './middleware/errors.js';
import { eventRoutes } from './notify/gateway.js';
import { accountRoutes } from './routes/account.js';
import { blockRoutes } from './routes/blocks.js';
import { changeRoutes } from './routes/changes.js';
import { nodeRoutes } from './routes/nodes.js';
import { versionRoutes } from './routes/versions.js';
import type { Backend } from './services/context.js';

/**
 * The HTTP application: error shaping, then the open health check, then bearer auth in front of
 * everything under /v1 — routes or not, so an unauthenticated caller learns nothing, not even
 * which routes and methods exist (invariant 8).
 */
export function createApp(backend: Backend, log: Logger): Koa {
  const app = new Koa();
  app.proxy = false;
  app.silent = true;
  app.use(errorMiddleware(log));

  const open = new Router();
  open.get('/healthz', async (ctx) => {
    await backend.db.raw('SELECT 1');
    ctx.body = { ok: true };
  });
  app.use(open.routes());

  const auth = authMiddleware(backend.db);
  app.use((ctx, next) => (ctx.path === '/v1' || ctx.path.startsWith('/v1/') ? auth(ctx, next) : next()));

  const api = new Router();
  for (const routes of [accountRoutes, nodeRoutes, versionRoutes, blockRoutes, changeRoutes, eventRoutes]) {
    api.use(routes(backend).routes());
  }
  app.use(api.routes());
  // 405 / 501 with an Allow header; errorMiddleware gives them the error body.
  app.use(api.allowedMethods());
  return app;
}
