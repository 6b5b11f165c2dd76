import Router from '@koa/router';
import { actorOf } from '../middleware/auth.js';
import { readJson } from '../middleware/json-body.js';
import { checkBlocks, getBlock, putBlock } from '../services/blocks.js';
import type { Backend } from '../services/context.js';

export function blockRoutes(backend: Backend): Router {
  const router = new Router();
  router.post('/v1/blocks/check', async (ctx) => {
    ctx.body = await checkBlocks(backend, actorOf(ctx), await readJson(ctx, backend.settings.limits.max_json_bytes));
  });
  router.put('/v1/blocks/:hash', async (ctx) => {
    const length = ctx.get('Content-Length');
    ctx.body = await putBlock(backend, actorOf(ctx), ctx.params.hash!, ctx.req, length === '' ? undefined : Number(length));
    ctx.status = 201;
  });
  router.get('/v1/blocks/:hash', async (ctx) => {
    const download = await getBlock(backend, actorOf(ctx), ctx.params.hash!, ctx.get('Range') || undefined);
    ctx.set('Accept-Ranges', 'bytes');
    ctx.set('ETag', `"${ctx.params.hash}"`);
    ctx.set('Cache-Control', 'private, max-age=31536000, immutable');
    ctx.type = 'application/octet-stream';
    if (download.range) {
      ctx.status = 206;
      ctx.set('Content-Range', `bytes ${download.range.start}-${download.range.end}/${download.size}`);
      ctx.length = download.range.end - download.range.start + 1;
    } else {
      ctx.length = download.size;
    }
    ctx.body = download.body;
  });
  return router;
}
