import type Router from '@koa/router';
import { actorOf } from '../middleware/auth.js';
import type { Backend } from '../services/context.js';
import { emptyTrash, listTrash } from '../services/trash.js';
import { newRouter } from './router.js';

export function trashRoutes(backend: Backend): Router {
  const router = newRouter();
  router.get('/v1/trash', async (ctx) => {
    ctx.body = await listTrash(backend, actorOf(ctx), ctx.query);
  });
  router.delete('/v1/trash', async (ctx) => {
    ctx.body = await emptyTrash(backend, actorOf(ctx));
  });
  return router;
}
