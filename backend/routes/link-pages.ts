import type { ServerResponse } from 'node:http';
import type Koa from 'koa';
import type Router from '@koa/router';
import type { Backend } from '../services/context.js';
import { fileChunks, fileContent, linkChildren, parseLinkPath, resolveLink, type FileChunk } from '../services/link-shares.js';
import { contentDisposition, filePage, folderPage, linkHref, LINK_PAGE_HEADERS, NOT_FOUND_PAGE, type Crumb } from '../web/link-pages.js';
import { newRouter } from './router.js';

/**
 * Link shares in a browser, without an account (DESIGN §3, §5). Public: app.ts lists these among
 * the routes that need no token. GET and HEAD:
 *
 * - `/s/TOKEN` — the shared node: a folder's listing, or a file's page.
 * - `/s/TOKEN/NAME/NAME…` — the same for a node under it, by names (each segment percent-encoded).
 * - `…?download=1` on a file — its bytes (`application/octet-stream`, `attachment`), streamed
 *   block by block from the block store. On a folder: 404 (no archive downloads).
 *
 * Anything that opens nothing — a malformed, unknown, revoked or expired token, a path that is
 * not there, is in the trash or is spelled to climb out (`..`, `%2e%2e`, `%2F`, `//`, NUL) — is
 * the same 404 page. Not rate limited: services/rate-limits.ts limits per user only, and a link's
 * visitor is no user (a per-IP limiter would go there).
 */
export function linkPageRoutes(backend: Backend): Router {
  const router = newRouter();
  router.get(/^\/s\/[\s\S]*$/, async (ctx) => {
    for (const [name, value] of Object.entries(LINK_PAGE_HEADERS)) ctx.set(name, value);
    const path = parseLinkPath(ctx.path);
    const target = path && (await resolveLink(backend.db, path));
    if (!path || !target) return notFound(ctx);
    const { root, node, trail } = target;
    const download = ctx.query.download === '1';
    const names = trail.slice(1).map((n) => n.name);
    const crumbs: Crumb[] = trail.map((n, i) => ({ name: n.name, href: linkHref(path.token, names.slice(0, i)) }));

    if (node.kind === 'dir' && !download) {
      const { children, more } = await linkChildren(backend.db, root, node);
      const entries = children.map((c) => ({
        name: c.name,
        kind: c.kind,
        size: c.size,
        mtime: c.mtime,
        href: c.kind === 'link' ? null : linkHref(path.token, [...names, c.name]),
        downloadHref: c.kind === 'file' ? linkHref(path.token, [...names, c.name], true) : null,
      }));
      ctx.type = 'text/html; charset=utf-8';
      ctx.body = folderPage(crumbs, entries, more);
      return;
    }
    if (node.kind !== 'file') return notFound(ctx);
    if (!download) {
      ctx.type = 'text/html; charset=utf-8';
      ctx.body = filePage(crumbs, node, linkHref(path.token, names, true));
      return;
    }

    const content = await fileContent(backend.db, node);
    ctx.status = 200;
    ctx.type = 'application/octet-stream';
    ctx.length = content.size;
    ctx.set('Content-Disposition', contentDisposition(node.name));
    if (ctx.method === 'HEAD') return;
    // Status and headers are set; the bytes are written here, block by block with backpressure.
    ctx.respond = false;
    await send(fileChunks(backend, content), ctx.res);
  });
  return router;
}

function notFound(ctx: Koa.Context): void {
  ctx.status = 404;
  ctx.type = 'text/html; charset=utf-8';
  ctx.body = NOT_FOUND_PAGE;
}

/**
 * Writes the chunks to `res` with backpressure, handing each back once written, then ends it. A
 * read error after the headers went out cuts the connection, so the client sees a short body,
 * never a complete-looking wrong one; a client that leaves stops the reading.
 */
async function send(chunks: AsyncGenerator<FileChunk>, res: ServerResponse): Promise<void> {
  let closed = false;
  res.once('close', () => (closed = true));
  try {
    for await (const chunk of chunks) {
      if (closed) return; // leaving the loop closes the generator, and with it the store's stream
      const written = chunk.written;
      if (!res.write(chunk.bytes, written && (() => written())) && !closed) await drained(res);
    }
    res.end();
  } catch (err) {
    res.destroy(err instanceof Error ? err : new Error(String(err)));
  }
}

/** Resolves when `res` can take more, or when it closed (the loop then stops). */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
