import type Router from '@koa/router';
import { actorOf } from '../middleware/auth.js';
import type { Backend } from '../services/context.js';
import { historyPage } from '../services/history.js';
import { newRouter } from './router.js';

export function historyRoutes(backend: Backend): Router {
  const router = newRouter();
  router.get('/v1/history', async (ctx) => {
    ctx.body = await historyPage(backend, actorOf(ctx), ctx.query);
  });
  return router;
}
