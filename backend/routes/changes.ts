import type Router from '@koa/router';
import { actorOf } from '../middleware/auth.js';
import type { Backend } from '../services/context.js';
import { changesHead, listChanges } from '../services/changes.js';
import { newRouter } from './router.js';

export function changeRoutes(backend: Backend): Router {
  const router = newRouter();
  router.get('/v1/changes', async (ctx) => {
    ctx.body = await listChanges(backend, actorOf(ctx), ctx.query);
  });
  router.get('/v1/changes/head', async (ctx) => {
    ctx.body = await changesHead(backend, actorOf(ctx));
  });
  return router;
}
