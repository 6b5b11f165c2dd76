import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type Router from '@koa/router';
import { isRecycling, type Recycling } from '../blockstore/blockstore.js';
import { noteFacts } from '../metrics/request-facts.js';
import { actorOf } from '../middleware/auth.js';
import { readJson } from '../middleware/json-body.js';
import { checkBlocks, getBlock, putBlock } from '../services/blocks.js';
import type { Backend } from '../services/context.js';
import { newRouter } from './router.js';

export function blockRoutes(backend: Backend): Router {
  const router = newRouter();
  router.post('/v1/blocks/check', async (ctx) => {
    const body = await readJson(ctx, backend.settings.limits.max_json_bytes);
    ctx.body = await checkBlocks(backend, actorOf(ctx), body);
    const hashes = (body as { hashes?: unknown } | null)?.hashes;
    if (Array.isArray(hashes)) noteFacts(ctx, { checkedHashes: new Set(hashes).size });
  });
  router.put('/v1/blocks/:hash', async (ctx) => {
    const length = ctx.get('Content-Length');
    const declared = length === '' ? undefined : Number(length);
    const actor = actorOf(ctx);
    await backend.rates.upload(actor.userId, declared ?? backend.settings.limits.max_block_size);
    ctx.body = await putBlock(backend, actor, ctx.params.hash!, ctx.req, declared);
    ctx.status = 201;
  });
  router.get('/v1/blocks/:hash', async (ctx) => {
    const direct = ctx.query.direct === '1';
    const download = await getBlock(backend, actorOf(ctx), ctx.params.hash!, ctx.get('Range') || undefined, { direct });
    if ('redirect' in download) {
      // Read it from the store (the client sends its Range there); not cached: the URL expires.
      ctx.status = 307;
      ctx.set('Location', download.redirect);
      ctx.set('Cache-Control', 'no-store');
      ctx.body = '';
      return;
    }
    ctx.set('Accept-Ranges', 'bytes');
    ctx.set('ETag', `"${ctx.params.hash}"`);
    ctx.set('Cache-Control', 'private, max-age=31536000, immutable');
    ctx.type = 'application/octet-stream';
    if (download.range) {
      ctx.status = 206;
      ctx.set('Content-Range', `bytes ${download.range.start}-${download.range.end}/${download.size}`);
      ctx.length = download.range.end - download.range.start + 1;
    } else {
      ctx.status = 200;
      ctx.length = download.size;
    }
    if (!isRecycling(download.body)) {
      ctx.body = download.body;
      return;
    }
    // Status and headers are set on the response; the body is written here rather than by Koa so
    // that each chunk goes back to the store's pool once the socket has taken it.
    ctx.respond = false;
    if (ctx.method === 'HEAD' || !ctx.writable) {
      download.body.destroy();
      ctx.res.end();
      return;
    }
    sendRecycling(download.body, ctx.res);
  });
  return router;
}

/**
 * Writes `body` to `res` with backpressure, handing each chunk back to the stream once written
 * (the write callback: the bytes are in the kernel, or the connection is gone). A read error
 * after the headers went out cuts the connection, so the client sees a short body, never a
 * complete-looking wrong one; a client that leaves stops the reading.
 */
function sendRecycling(body: Readable & Recycling, res: ServerResponse): void {
  res.once('close', () => body.destroy());
  body.once('error', (err) => res.destroy(err));
  body.once('end', () => res.end());
  body.on('data', (chunk: Buffer) => {
    if (!res.write(chunk, () => body.recycle(chunk))) {
      body.pause();
      res.once('drain', () => body.resume());
    }
  });
}
