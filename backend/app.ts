import Koa from 'koa';
import Router from '@koa/router';
import type { Logger } from 'pino';
import { authMiddleware } from './middleware/auth.js';
import { errorMiddleware } from './middleware/errors.js';
import { accountRoutes } from './routes/account.js';
import { blockRoutes } from './routes/blocks.js';
import { changeRoutes } from './routes/changes.js';
import { nodeRoutes } from './routes/nodes.js';
import { versionRoutes } from './routes/versions.js';
import type { Backend } from './services/context.js';

/** The HTTP application: error shaping, then the open health check, then bearer auth in front of every /v1 route. */
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

  const api = new Router();
  api.use('/v1', authMiddleware(backend.db));
  for (const routes of [accountRoutes, nodeRoutes, versionRoutes, blockRoutes, changeRoutes]) {
    api.use(routes(backend).routes());
  }
  app.use(api.routes());
  app.use(api.allowedMethods({ throw: true }));
  return app;
}
