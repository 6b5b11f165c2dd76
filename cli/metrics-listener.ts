import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { InvalidArgumentError } from 'commander';
import { parseListen } from '../backend/server.js';

/** What a metrics listener serves: Prometheus text made on each scrape. */
export interface MetricsSource {
  contentType: string;
  text(): Promise<string>;
}

export interface MetricsListener {
  /** `http://HOST:PORT/metrics` */
  url: string;
  close(): Promise<void>;
}

/** `--metrics HOST:PORT` of mount and up: where to serve GET /metrics ([::1]:9464 for IPv6; port 0 picks a free one). */
export function parseMetricsAddress(value: string): string {
  try {
    parseListen(value);
  } catch {
    throw new InvalidArgumentError(`not HOST:PORT: "${value}" (where to serve Prometheus metrics, e.g. 127.0.0.1:9464)`);
  }
  return value;
}

/** `serve --metrics`: on (GET /metrics on the API's address, the default), off, or HOST:PORT (a listener of its own). */
export function parseServeMetrics(value: string): string {
  const v = value.trim().toLowerCase();
  if (v === 'on' || v === 'off') return v;
  try {
    parseListen(value);
  } catch {
    throw new InvalidArgumentError(`not on, off or HOST:PORT: "${value}" (e.g. --metrics 127.0.0.1:9464 to serve them apart from the API)`);
  }
  return value;
}

/**
 * Serves `GET /metrics` on its own HTTP listener, without authentication: bind it to loopback
 * (or a monitoring network) — the metrics carry no names or paths, but volumes and timings.
 */
export async function serveMetrics(address: string, source: MetricsSource): Promise<MetricsListener> {
  const { host, port } = parseListen(address);
  const server = http.createServer((req, res) => {
    const pathname = (req.url ?? '/').split('?', 1)[0];
    if (pathname !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('not found: metrics are at GET /metrics\n');
      return;
    }
    source.text().then(
      (text) => res.writeHead(200, { 'Content-Type': source.contentType, 'Cache-Control': 'no-store' }).end(req.method === 'HEAD' ? undefined : text),
      (err: unknown) => res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end(`metrics failed: ${(err as Error).message}\n`),
    );
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(new Error(`cannot serve metrics on ${address}: ${err.code === 'EADDRINUSE' ? 'the address is in use' : (err.code ?? err.message)}`)));
    server.listen(port, host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  const urlHost = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  return {
    url: `http://${urlHost}:${a.port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
