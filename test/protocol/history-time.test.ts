import t from 'tap';
import { parseHistoryTime } from '../../protocol/history-time.js';

/** The TIME of GET /v1/history and `.stratus/at/TIME/` (protocol/history-time.ts): one parser for the server and the drive. */

t.test('ISO 8601 forms and ms since the epoch; without a zone a time is UTC', async (t) => {
  const cases: Array<[string, number]> = [
    ['2026-12-01', Date.UTC(2026, 11, 1)],
    ['2026-12-01T10:00', Date.UTC(2026, 11, 1, 10, 0)],
    ['2026-12-01 10:00', Date.UTC(2026, 11, 1, 10, 0)],
    ['2026-12-01T10:00:05', Date.UTC(2026, 11, 1, 10, 0, 5)],
    ['2026-12-01T10:00:05.123', Date.UTC(2026, 11, 1, 10, 0, 5, 123)],
    ['2026-12-01T10:00:05.1', Date.UTC(2026, 11, 1, 10, 0, 5, 100)],
    ['2026-12-01T10:00:05.123456789Z', Date.UTC(2026, 11, 1, 10, 0, 5, 123)],
    ['2026-12-01T10:00:00.123Z', Date.UTC(2026, 11, 1, 10, 0, 0, 123)],
    ['2026-12-01T12:00+02:00', Date.UTC(2026, 11, 1, 10, 0)],
    ['2026-12-01T12:00+0200', Date.UTC(2026, 11, 1, 10, 0)],
    ['2026-12-01T05:30-04:30', Date.UTC(2026, 11, 1, 10, 0)],
    ['2024-02-29T00:00Z', Date.UTC(2024, 1, 29)],
    ['0', 0],
    ['1796119200000', 1796119200000],
  ];
  for (const [text, ms] of cases) t.equal(parseHistoryTime(text), ms, text);
  t.equal(parseHistoryTime(new Date(1796119200123).toISOString()), 1796119200123, 'what toISOString writes');
});

t.test('anything else is not a time', async (t) => {
  for (const text of ['', 'now', 'yesterday', '2026-02-30', '2025-02-29T00:00', '2026-13-01', '2026-12-00', '2026-12-01T24:00', '2026-12-01T10:60', '2026-12-01T10:00:60', '2026-12-01T10', '2026-12-01Z', '2026-12-01T10:00+24:00', '2026-12-01T10:00 02:00', '26-12-01', '1969-12-31T23:59', '0099-01-01', '-5', '1e12', '0x10', '007', '1.5', ' 2026-12-01', '2026-12-01T10:00Z ', '99999999999999999']) {
    t.equal(parseHistoryTime(text), undefined, JSON.stringify(text));
  }
});
