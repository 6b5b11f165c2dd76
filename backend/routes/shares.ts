import type Router from '@koa/router';
import { actorOf } from '../middleware/auth.js';
import { readJson } from '../middleware/json-body.js';
import type { Backend } from '../services/context.js';
import { createShare, deleteShare, listNodeShares, listShares } from '../services/shares.js';
import { newRouter } from './router.js';

/** Shares (DESIGN §5): grant, list and revoke on a node; what is shared with and by the caller. */
export function shareRoutes(backend: Backend): Router {
  const router = newRouter();
  router.post('/v1/nodes/:id/shares', async (ctx) => {
    ctx.body = await createShare(backend, actorOf(ctx), ctx.params.id!, await readJson(ctx, backend.settings.limits.max_json_bytes));
    ctx.status = 201;
  });
  router.get('/v1/nodes/:id/shares', async (ctx) => {
    ctx.body = await listNodeShares(backend, actorOf(ctx), ctx.params.id!);
  });
  router.delete('/v1/nodes/:id/shares/:share', async (ctx) => {
    ctx.body = await deleteShare(backend, actorOf(ctx), ctx.params.id!, ctx.params.share);
  });
  router.get('/v1/shares', async (ctx) => {
    ctx.body = await listShares(backend, actorOf(ctx));
  });
  return router;
}
