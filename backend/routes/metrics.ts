import type Router from '@koa/router';
import type { ServerMetrics } from '../metrics/server-metrics.js';
import { newRouter } from './router.js';

/**
 * `GET /metrics`: the Prometheus text exposition. Public like /healthz (a scraper has no device
 * token); its labels name no user, device or path. `serve --metrics off` removes it, `--metrics
 * HOST:PORT` moves it to a listener of its own (e.g. loopback while the API is public).
 */
export function metricsRoutes(metrics: ServerMetrics): Router {
  const router = newRouter();
  router.get('/metrics', async (ctx) => {
    ctx.body = await metrics.text();
    ctx.type = metrics.contentType;
    ctx.set('Cache-Control', 'no-store');
  });
  return router;
}
