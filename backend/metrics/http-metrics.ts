import type Koa from 'koa';
import { factsOf } from './request-facts.js';
import type { ServerMetrics } from './server-metrics.js';

/** Routes whose success is a new version. */
const COMMIT_ROUTES = new Set(['POST /v1/nodes/:id/versions', 'POST /v1/nodes/:id/versions/:v/restore']);

/**
 * Counts what the API did from the outside of its routes: placed first, it sees each reply as the
 * client gets it (error shaping included), the route that answered and the facts the route noted
 * (request-facts.ts). Nothing here reads a body or a parameter: labels are error codes and statuses.
 */
export function metricsMiddleware(metrics: ServerMetrics): Koa.Middleware {
  return async (ctx, next) => {
    const started = process.hrtime.bigint();
    try {
      await next();
    } finally {
      const route = (ctx as { _matchedRoute?: unknown })._matchedRoute;
      if (typeof route === 'string') count(metrics, ctx, `${ctx.method} ${route}`, Number(process.hrtime.bigint() - started) / 1e9);
    }
  };
}

function count(metrics: ServerMetrics, ctx: Koa.Context, route: string, seconds: number): void {
  const ok = ctx.status >= 200 && ctx.status < 300;
  if (COMMIT_ROUTES.has(route)) {
    metrics.commitSeconds.observe({ outcome: ok ? 'ok' : 'failed' }, seconds);
    if (ok) {
      metrics.commits.inc();
      const size = factsOf(ctx).committedBytes;
      if (size !== undefined) metrics.committedBytes.inc(size);
    } else {
      metrics.commitFailures.inc({ reason: errorCode(ctx.body), status: String(ctx.status) });
    }
    return;
  }
  if (!ok && ctx.status !== 307) return;
  switch (route) {
    case 'PUT /v1/blocks/:hash': {
      const size = (ctx.body as { size?: unknown } | undefined)?.size;
      if (typeof size === 'number') {
        metrics.blocksIn.inc();
        metrics.blockBytesIn.inc(size);
      }
      return;
    }
    case 'GET /v1/blocks/:hash':
      if (ctx.status === 307) metrics.blockRedirects.inc();
      else if (typeof ctx.response.length === 'number') metrics.blockBytesOut.inc(ctx.response.length);
      return;
    case 'POST /v1/blocks/check': {
      const missing = (ctx.body as { missing?: unknown } | undefined)?.missing;
      const checked = factsOf(ctx).checkedHashes;
      if (!Array.isArray(missing) || checked === undefined) return;
      metrics.blockChecks.inc({ result: 'missing' }, missing.length);
      metrics.blockChecks.inc({ result: 'present' }, Math.max(0, checked - missing.length));
      return;
    }
  }
}

/** The API error code of an error reply (bounded: protocol/errors.ts), else `internal`. */
function errorCode(body: unknown): string {
  const code = (body as { error?: { code?: unknown } } | undefined)?.error?.code;
  return typeof code === 'string' ? code : 'internal';
}
