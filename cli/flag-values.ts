import bytes from 'bytes';
import { InvalidArgumentError } from 'commander';
import { parseListen } from '../backend/server.js';

/**
 * The values flags take, parsed strictly: each failure names the value and what one looks like
 * (cli/config.ts adds where it came from: the flag, the environment or the config file).
 */

/** A number of seconds, ≥ 0, fractions allowed: 60, 2.5. */
export function parseSeconds(value: string): number {
  const n = /^\s*\d+(\.\d+)?\s*$/.test(value) ? Number(value) : NaN;
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`not a number of seconds: "${value}" (e.g. 60 or 2.5)`);
  return n;
}

/**
 * A size: a number and a unit, powers of 1024 as `ls -h` and `stratus status` show them (512MB,
 * 1.5GB, 10GB); a bare number is bytes. Nothing else: `bytes` alone would read "10 potatoes" as 10.
 */
export function parseSize(value: string): number {
  const n = /^\s*\d+(\.\d+)?\s*([kmgtp]i?b|b)?\s*$/i.test(value) ? bytes.parse(value.replace(/ib\s*$/i, 'b')) : null;
  if (n === null || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`not a size: ${value} (a number and a unit: 512MB, 10GB)`);
  return n;
}

/** A server URL: http(s)://HOST[:PORT][/path], kept as given (no trailing slash). */
export function parseServerUrl(value: string): string {
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    url = undefined;
  }
  if (!url || !['http:', 'https:'].includes(url.protocol) || !url.hostname || url.search || url.hash || url.username || url.password) {
    throw new InvalidArgumentError(`not a server URL: "${value}" (http://HOST:PORT or https://HOST, e.g. http://127.0.0.1:7420)`);
  }
  return value.replace(/\/+$/, '');
}

/** HOST:PORT to listen on ([::1]:7420 for IPv6; port 0 picks a free one). */
export function parseListenAddress(value: string): string {
  try {
    parseListen(value);
  } catch {
    throw new InvalidArgumentError(`not HOST:PORT: "${value}" (e.g. 127.0.0.1:7420, 0.0.0.0:7420 or [::1]:7420)`);
  }
  return value;
}
