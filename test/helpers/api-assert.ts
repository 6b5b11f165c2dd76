import http from 'node:http';
import { ApiError } from '../../protocol/errors.js';
import type { TestBackend } from './backend.js';

/** The subset of tap's Test these helpers use (keeps them free of tap's types). */
interface Asserts {
  fail(message: string): unknown;
  equal(found: unknown, wanted: unknown, message: string): unknown;
}

/** Awaits a client call that must fail with this HTTP status and error code; returns the error. */
export async function rejectsWith(t: Asserts, call: Promise<unknown>, status: number, code: string, what = ''): Promise<ApiError | undefined> {
  try {
    await call;
  } catch (err) {
    if (!(err instanceof ApiError)) {
      t.fail(`${what}: expected ApiError ${status} ${code}, got ${String(err)}`);
      return undefined;
    }
    t.equal(err.status, status, `${what}: status ${status}`);
    t.equal(err.code, code, `${what}: code ${code}`);
    return err;
  }
  t.fail(`${what}: expected ${status} ${code}, but the call succeeded`);
  return undefined;
}

export interface RawResponse {
  status: number;
  headers: Headers;
  text: string;
  /** The parsed body, or undefined when it is not JSON. */
  json: unknown;
}

/**
 * One raw HTTP request (for what the typed client would never send); the body is read in full.
 * Sent with node:http, so the path goes out exactly as written: no normalization of dot
 * segments, slashes or percent-encoding (fetch would clean them up).
 */
export function raw(
  backend: TestBackend,
  method: string,
  pathname: string,
  opts: { token?: string; body?: string | Buffer; headers?: Record<string, string> } = {},
): Promise<RawResponse> {
  const url = new URL(backend.url);
  const headers: Record<string, string> = { ...(opts.token !== undefined && { authorization: `Bearer ${opts.token}` }), ...opts.headers };
  if (opts.body !== undefined && headers['content-length'] === undefined) headers['content-length'] = String(Buffer.byteLength(opts.body));
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, method, path: pathname, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        const responseHeaders = new Headers();
        for (const [name, value] of Object.entries(res.headers)) {
          if (value !== undefined) responseHeaders.set(name, Array.isArray(value) ? value.join(', ') : value);
        }
        resolve({ status: res.statusCode ?? 0, headers: responseHeaders, text, json });
      });
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** A JSON request with `Content-Type: application/json`. */
export function rawJson(backend: TestBackend, method: string, pathname: string, token: string | undefined, body: unknown): Promise<RawResponse> {
  return raw(backend, method, pathname, { token, body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
}

/** The error code of an error body, or undefined when the body is not of the error shape. */
export function errorCode(res: RawResponse): string | undefined {
  const error = (res.json as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  return typeof error?.code === 'string' && typeof error.message === 'string' ? error.code : undefined;
}
