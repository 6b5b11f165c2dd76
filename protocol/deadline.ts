/**
 * How long a read the drive cannot answer without the server (a folder never listed, a manifest
 * never read, a block never fetched) waits before it fails with EIO (README, "Offline").
 */
export const FETCH_DEADLINE_MS = 10_000;

/** `p`, or a failure (ETIMEDOUT, shown as EIO) once `ms` pass without an answer; `p` itself is left to finish. */
export function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`${what}: no answer from the server within ${ms} ms`), { code: 'ETIMEDOUT' })), ms);
  });
  p.catch(() => undefined);
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
