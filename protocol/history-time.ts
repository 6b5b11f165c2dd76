/**
 * The one spelling of a past time that `GET /v1/history?at=TIME` and the drive's
 * `.stratus/at/TIME/` take (the server and the drive parse it alike):
 *
 * - milliseconds since 1970-01-01T00:00Z in plain decimal digits (`1796119200000`), or
 * - ISO 8601 (RFC 3339 style): a date (`2026-12-01`, midnight), or a date and a time to the minute,
 *   second or fraction of a second (`2026-12-01T10:00`, `2026-12-01T10:00:00.123`), `T` or a space
 *   between them, then optionally `Z` or an offset (`+02:00`, `-0530`). A time without a zone is
 *   UTC at the server (`zoneless: 'utc'`: it cannot know the asker's zone) and the local time of
 *   the machine on the drive and in the CLI (`'local'`: as a person means it; both send the server
 *   an instant). Digits past the millisecond are dropped.
 *
 * Anything else — an impossible date (`2026-02-30`), a leap second, a time before 1970 — is not a
 * time. Whether it lies in the future is the caller's question (the journal cannot answer it yet).
 */

const ISO_RE = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(Z|[+-]\d{2}(?::?\d{2})?)?)?$/;
const MS_RE = /^(?:0|[1-9][0-9]{0,15})$/;

/** What a TIME may look like, for error messages. */
export const HISTORY_TIME_FORMS = 'ISO 8601 (2026-12-01, 2026-12-01T10:00, 2026-12-01T10:00:00.123Z, 2026-12-01T12:00+02:00; without a zone: UTC) or milliseconds since 1970';

/** How a time without a zone is read: UTC (the server) or the local time of this machine (the drive, the CLI). */
export type Zoneless = 'utc' | 'local';

/** The instant `text` names, in ms since the epoch; undefined when it is not a time of the forms above. */
export function parseHistoryTime(text: string, zoneless: Zoneless = 'utc'): number | undefined {
  if (MS_RE.test(text)) {
    const ms = Number(text);
    return Number.isSafeInteger(ms) ? ms : undefined;
  }
  const m = ISO_RE.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h = '0', mi = '0', s = '0', frac = '', given] = m;
  const zone = given ?? (zoneless === 'utc' ? 'Z' : undefined);
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const hour = Number(h);
  const minute = Number(mi);
  const second = Number(s);
  // Before 1970 nothing was journaled (and Date.UTC would take years 0–99 as 1900–1999).
  if (year < 1970 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return undefined;
  const ms3 = Number(frac.slice(0, 3).padEnd(3, '0'));
  if (zone === undefined) {
    const local = new Date(year, month - 1, day, hour, minute, second, ms3);
    // An impossible day (30 February), or a local time skipped by a clock change, rolls over: not a time.
    if (local.getDate() !== day || local.getHours() !== hour || local.getMinutes() !== minute) return undefined;
    return local.getTime() >= 0 ? local.getTime() : undefined;
  }
  const base = Date.UTC(year, month - 1, day, hour, minute, second, ms3);
  // An impossible day (30 February) rolls into the next month: not a time.
  if (new Date(base).getUTCDate() !== day) return undefined;
  const offset = zoneOffsetMs(zone);
  if (offset === undefined) return undefined;
  const ms = base - offset;
  return ms >= 0 ? ms : undefined;
}

/** `Z` → 0; `+HH:MM`, `+HHMM`, `+HH` → that offset from UTC in ms; undefined when out of range. */
function zoneOffsetMs(zone: string): number | undefined {
  if (zone === 'Z') return 0;
  const digits = zone.slice(1).replace(':', '');
  const hours = Number(digits.slice(0, 2));
  const minutes = digits.length > 2 ? Number(digits.slice(2)) : 0;
  if (hours > 23 || minutes > 59) return undefined;
  return (zone[0] === '-' ? -1 : 1) * (hours * 60 + minutes) * 60_000;
}
