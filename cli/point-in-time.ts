import { InvalidArgumentError } from 'commander';
import { parseHistoryTime } from '../protocol/history-time.js';
import { parseDuration } from './duration.js';

/**
 * A moment in the past as `restore --at` takes it: a time as the drive's `.stratus/at/TIME` takes
 * it (protocol/history-time.ts: ISO 8601 like `2026-12-01T10:00`, local time when no zone is
 * given, as a person means it; `Z` or `+02:00`; or ms since 1970) — or how long ago, as
 * `--expires` spells durations: `30m`, `2h`, `3d`. Anything else and a time in the future are
 * refused, so a typo never restores some other moment.
 */
export function parsePointInTime(value: string, now = Date.now()): number {
  const ms = /^[0-9]+[a-z]$/.test(value) ? now - agoMs(value) : (parseHistoryTime(value, 'local') ?? NaN);
  if (Number.isNaN(ms)) throw new InvalidArgumentError(`not a time: "${value}" (ISO 8601 like 2026-12-01T10:00, local unless it ends in Z or +HH:MM, or how long ago: 30m, 2h, 3d)`);
  if (ms > now) throw new InvalidArgumentError(`${value} is in the future`);
  return ms;
}

function agoMs(value: string): number {
  try {
    return parseDuration(value);
  } catch {
    return NaN;
  }
}
