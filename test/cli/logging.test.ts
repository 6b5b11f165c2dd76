import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { createLogger, parseLogFormat, parseLogLevel, textLine } from '../../cli/logging.js';
import { relogLine } from '../../cli/relog.js';

/*
 * The log plumbing of serve, mount and up (cli/logging.ts, cli/relog.ts), without processes:
 * how a line looks in the `text` format, that --log-file gets every line as JSON, and that a
 * line of the embedded server is logged again as the server's, at its level, with its fields.
 */

t.test('text format: `stratus: MESSAGE`, an error’s message after it, nothing else', async (t) => {
  t.equal(textLine('{"level":30,"time":"x","msg":"drive ready at /m"}\n'), 'stratus: drive ready at /m\n', 'the message alone');
  t.equal(textLine('{"level":50,"msg":"request failed","err":{"message":"boom","stack":"Error: boom\\n    at x"}}\n'), 'stratus: request failed: boom\n', 'an error adds its message, never its stack');
  t.equal(textLine('not json'), 'not json\n', 'a line that is not JSON passes as it is');
});

t.test('flag values: levels and formats, with one-line refusals', async (t) => {
  t.equal(parseLogLevel('WARN'), 'warn', 'levels are case-insensitive');
  t.throws(() => parseLogLevel('loud'), /not a log level: "loud" \(one of trace, debug, info, warn, error, fatal, silent\)/, 'an unknown level names the choices');
  t.throws(() => parseLogFormat('xml'), /not a log format: "xml"/, 'an unknown format is refused');
});

t.test('--log-file: every line at the level or above, as JSON with an ISO time', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-log-'));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'sub', 'stratus.log');
  const log = createLogger({ level: 'warn', file, format: 'json' });
  log.info('not written: below the level');
  log.child({ component: 'sender' }).warn('commit of /a.txt failed: offline; retrying in 500 ms');
  const lines = (await fs.readFile(file, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.equal(lines.length, 1, 'only the warning (the folder was created)');
  t.match(lines[0], { level: 40, component: 'sender', msg: 'commit of /a.txt failed: offline; retrying in 500 ms' }, 'level, component and message');
  t.ok(!Number.isNaN(Date.parse(String(lines[0]!.time))), 'an ISO time');
  t.throws(() => createLogger({ level: 'info', file: '/proc/stratus.log', format: 'json' }), /^cannot write the log file \/proc\/stratus\.log: /, 'an unwritable log file is one clear error');
});

t.test('relogLine: a server line becomes the caller’s, at its level, marked as the server’s', async (t) => {
  const out: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (l: string) => void out.push(JSON.parse(l) as Record<string, unknown>) });
  const msg = relogLine(log, JSON.stringify({ level: 50, time: 1, pid: 4242, hostname: 'h', component: 'events', msg: 'events upgrade failed', method: 'GET' }));
  t.equal(msg, 'events upgrade failed', 'returns the message (what `up` looks for: "serving on …")');
  t.match(out[0], { level: 50, component: 'server.events', server_pid: 4242, method: 'GET', msg: 'events upgrade failed' }, 'same level and fields, as the server’s');
  t.not(out[0]!.pid, 4242, 'the pid field is the caller’s (the server’s is server_pid)');
  relogLine(log, 'Error: crashed before its logger');
  t.match(out[1], { level: 50, component: 'server', msg: 'Error: crashed before its logger' }, 'a line that is not JSON is an error line as it is');
});
