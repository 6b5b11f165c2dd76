import type Router from '@koa/router';
import { actorOf } from '../middleware/auth.js';
import { readJson } from '../middleware/json-body.js';
import { runBatch } from '../services/batch.js';
import type { Backend } from '../services/context.js';
import { createNode, deleteNode, getNode, getRoot, listChildrenJson, restoreNode, updateNode } from '../services/nodes.js';
import { newRouter } from './router.js';

export function nodeRoutes(backend: Backend): Router {
  const router = newRouter();
  const json = (ctx: Parameters<typeof readJson>[0]) => readJson(ctx, backend.settings.limits.max_json_bytes);

  router.get('/v1/nodes/root', async (ctx) => {
    ctx.body = await getRoot(backend, actorOf(ctx));
  });
  router.get('/v1/nodes/:id', async (ctx) => {
    ctx.body = await getNode(backend, actorOf(ctx), ctx.params.id!);
  });
  router.get('/v1/nodes/:id/children', async (ctx) => {
    // JSON text built by the database where it can (big folders: see listChildrenJson).
    ctx.body = await listChildrenJson(backend, actorOf(ctx), ctx.params.id!, ctx.query);
    ctx.type = 'application/json';
  });
  router.post('/v1/nodes', async (ctx) => {
    ctx.body = await createNode(backend, actorOf(ctx), await json(ctx));
    ctx.status = 201;
  });
  router.patch('/v1/nodes/:id', async (ctx) => {
    ctx.body = await updateNode(backend, actorOf(ctx), ctx.params.id!, await json(ctx));
  });
  router.delete('/v1/nodes/:id', async (ctx) => {
    ctx.body = await deleteNode(backend, actorOf(ctx), ctx.params.id!, ctx.query);
  });
  router.post('/v1/batch', async (ctx) => {
    ctx.body = await runBatch(backend, actorOf(ctx), await json(ctx));
  });
  router.post('/v1/nodes/:id/restore', async (ctx) => {
    ctx.body = await restoreNode(backend, actorOf(ctx), ctx.params.id!, await json(ctx));
  });
  return router;
}
