import type Router from '@koa/router';
import { noteFacts } from '../metrics/request-facts.js';
import { actorOf } from '../middleware/auth.js';
import { readJsonBytes } from '../middleware/json-body.js';
import { parseCommitBodyOffLoop } from '../services/commit-body-pool.js';
import type { Backend } from '../services/context.js';
import { commitVersion, getManifest, listVersions, restoreVersion } from '../services/versions.js';
import { newRouter } from './router.js';

export function versionRoutes(backend: Backend): Router {
  const router = newRouter();
  router.get('/v1/nodes/:id/versions', async (ctx) => {
    ctx.body = await listVersions(backend, actorOf(ctx), ctx.params.id!, ctx.query);
  });
  router.get('/v1/nodes/:id/versions/:v', async (ctx) => {
    ctx.body = await getManifest(backend, actorOf(ctx), ctx.params.id!, ctx.params.v!);
    ctx.type = 'application/json';
  });
  router.post('/v1/nodes/:id/versions', async (ctx) => {
    const bytes = await readJsonBytes(ctx, backend.settings.limits.max_commit_json_bytes, 'max_commit_json_bytes');
    const body = await parseCommitBodyOffLoop(bytes ?? Buffer.alloc(0), backend.settings.limits);
    noteFacts(ctx, { committedBytes: body.size });
    ctx.body = await commitVersion(backend, actorOf(ctx), ctx.params.id!, body);
    ctx.type = 'application/json';
    ctx.status = 201;
  });
  router.post('/v1/nodes/:id/versions/:v/restore', async (ctx) => {
    ctx.body = await restoreVersion(backend, actorOf(ctx), ctx.params.id!, ctx.params.v!);
    ctx.type = 'application/json';
    ctx.status = 201;
  });
  return router;
}
