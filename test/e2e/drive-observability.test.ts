import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { askDrive } from '../../mount/control/client.js';
import { blockHash } from '../helpers/backend.js';
import { refused, stratusCli } from '../helpers/cli-run.js';
import { eventually, forceUnmount, mountDrive, spawnUntil, startServerProcess, tempDir } from '../helpers/drive.js';
import { parseMetrics, scrapeMetrics, type Metrics } from '../helpers/prometheus.js';

/*
 * The drive's logs and metrics as an operator uses them (DESIGN §11), on a real mount:
 * - `--metrics HOST:PORT` serves Prometheus text that a real parser reads, and the control socket
 *   answers `metrics` with the same; its counters move with reads: the first read of a block is a
 *   cache miss (one timed fetch of its bytes), a read of the same block through another file is a
 *   hit that fetches nothing.
 * - `--log-file` writes JSON lines; a failure is one line at warning level naming the file by its
 *   path on the drive, with no stack trace; the terminal keeps its `stratus: …` lines.
 * - `serve --metrics` places the server's /metrics (API address, a listener of its own, or off).
 * - `up` shows one log: the embedded server's lines come out as the drive's, in both formats.
 */

const metricsAt = (stderr: string): string => {
  const m = /drive metrics at (http:\/\/\S+)/.exec(stderr);
  if (!m) throw new Error(`no "drive metrics at" line in: ${stderr}`);
  return m[1]!;
};

t.test('drive metrics: a cache miss then a hit, over HTTP and the control socket', async (t) => {
  const server = await startServerProcess(t);
  const { client } = await server.addUser('metrics-reader');
  // Two files with the same content (one block): the second is read from the cache the first filled.
  const bytes = crypto.randomBytes(100_000);
  const hash = blockHash(bytes);
  await client.putBlock(hash, bytes);
  const root = await client.root();
  for (const name of ['a.bin', 'b.bin']) {
    const file = await client.create({ parent_id: root.id, name, kind: 'file' });
    await client.commit(file.id, { base_version: 0, blocks: [{ hash, size: bytes.length }], size: bytes.length });
  }
  const { token } = await server.addDevice('metrics-reader', 'laptop');
  const drive = await mountDrive(t, server, token, { args: ['--metrics', '127.0.0.1:0'] });
  const url = metricsAt(drive.stderr());

  const before = await scrapeMetrics(url);
  t.equal(before.value('stratus_drive_sender_state', { state: 'online' }), 1, 'the sender is online');
  t.equal(before.value('stratus_drive_queue_depth'), 0, 'nothing queued');
  t.ok(before.family('nodejs_eventloop_lag_seconds'), 'process metrics (event-loop lag) are there');

  t.same(await fs.readFile(drive.p('a.bin')), bytes, 'a.bin reads right');
  const missed = await scrapeMetrics(url);
  const delta = (m: Metrics, from: Metrics, name: string, labels?: Record<string, string>) => m.value(name, labels) - from.value(name, labels);
  t.equal(delta(missed, before, 'stratus_drive_cache_misses_total'), 1, 'the first read of the block is one cache miss');
  t.equal(delta(missed, before, 'stratus_drive_cache_miss_bytes_total'), bytes.length, 'its bytes were fetched');
  t.equal(delta(missed, before, 'stratus_drive_fetch_duration_seconds_count', { outcome: 'ok' }), 1, 'one fetch, timed');

  t.same(await fs.readFile(drive.p('b.bin')), bytes, 'b.bin (same block) reads right');
  const hit = await scrapeMetrics(url);
  t.equal(delta(hit, missed, 'stratus_drive_cache_misses_total'), 0, 'no miss for the cached block');
  t.equal(delta(hit, missed, 'stratus_drive_fetch_duration_seconds_count', { outcome: 'ok' }), 0, 'nothing fetched');
  t.ok(delta(hit, missed, 'stratus_drive_cache_hits_total') >= 1, 'cache hits grew');
  t.ok(delta(hit, missed, 'stratus_drive_cache_hit_bytes_total') >= bytes.length, 'by at least the bytes read');
  t.equal(hit.value('stratus_drive_cache_blocks'), 1, 'one block in the cache');

  const viaSocket = (await askDrive(drive.mountpoint, 'metrics')) as { contentType: string; text: string };
  t.match(viaSocket.contentType, /^text\/plain; version=0\.0\.4/, 'the control socket answers Prometheus text');
  t.equal(parseMetrics(viaSocket.text).value('stratus_drive_cache_misses_total'), hit.value('stratus_drive_cache_misses_total'), 'with the same counters');

  const res = await fetch(url.replace(/\/metrics$/, '/other'));
  t.equal(res.status, 404, 'the listener serves /metrics only');
  await res.text();
});

t.test('--log-file: JSON lines; a failure is one warning naming the file, no stack', async (t) => {
  const server = await startServerProcess(t);
  const { token, client } = await server.addUser('log-writer');
  // A file on the server the drive has never read: once the server is gone, reading it fails.
  const remote = crypto.randomBytes(5000);
  const remoteHash = blockHash(remote);
  await client.putBlock(remoteHash, remote);
  const file = await client.create({ parent_id: (await client.root()).id, name: 'remote.bin', kind: 'file' });
  await client.commit(file.id, { base_version: 0, blocks: [{ hash: remoteHash, size: remote.length }], size: remote.length });
  const logFile = path.join(await tempDir(t, 'logs'), 'nested', 'drive.log');
  const drive = await mountDrive(t, server, token, { args: ['--log-file', logFile], drainTimeout: 1 });
  const lines = async () =>
    (await fs.readFile(logFile, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { level: number; time: string; msg: string; component?: string });

  const ready = await lines();
  t.ok(ready.some((l) => l.level === 30 && /^drive ready at /.test(l.msg)), 'the start is an info line of the file');
  t.ok(ready.every((l) => typeof l.time === 'string' && !Number.isNaN(Date.parse(l.time))), 'every line has an ISO time');
  t.match(drive.stderr(), /^stratus: drive ready at /m, 'stderr (not a terminal) keeps its one-line messages');
  t.equal((await fs.stat(logFile)).mode & 0o777, 0o600, 'the log file is the user’s only (mode 600)');

  // The server goes away (the root listed before: changes are local-first); a save cannot be sent.
  t.same(await fs.readdir(drive.mountpoint), ['remote.bin'], 'the drive lists the server’s file');
  await server.kill();
  await fs.mkdir(drive.p('reports'));
  await fs.writeFile(drive.p('reports', 'q3.txt'), 'numbers');
  const failures = await eventually(
    'a warning naming reports/q3.txt in the log file',
    lines,
    (ls) => ls.some((l) => l.level === 40 && l.msg.includes('/reports')),
  );
  const failure = failures.find((l) => l.level === 40 && l.msg.includes('/reports'))!;
  t.match(failure.msg, /^(create|commit) of \/reports(\/q3\.txt)? failed: .*retrying in \d+ ms$/, `one line naming the path on the drive: ${failure.msg}`);
  t.equal(failure.component, 'sender', 'from the sender');
  t.notMatch(failure.msg, /\n|\s+at \S+ \(/, 'no stack trace');
  t.notMatch(JSON.stringify(failures), /"sid"|inode \d+/, 'no node ids or inode numbers in the log');
  t.match(drive.stderr(), /stratus: (create|commit) of \/reports\S* failed/, 'the same line on stderr');

  // A read the server must answer fails with EIO: one error line naming the file, no stack.
  await t.rejects(fs.readFile(drive.p('remote.bin')), { code: 'EIO' }, 'reading a file never fetched fails with EIO');
  const eio = await eventually('an error line naming remote.bin', lines, (ls) => ls.some((l) => l.level === 50 && l.msg.includes('/remote.bin')));
  const line = eio.find((l) => l.level === 50 && l.msg.includes('/remote.bin'))!;
  t.match(line.msg, /^(open|read) of \/remote\.bin failed \(EIO\): \S/, `the EIO names the file: ${line.msg}`);
  t.notMatch(line.msg, /\n/, 'on one line');
  t.notOk(eio.some((l) => /\n\s+at /.test(l.msg)), 'no stack trace anywhere in the log');
});

t.test('serve --metrics: HOST:PORT moves /metrics off the API address, off removes it, a bad value is one line', async (t) => {
  const apart = await startServerProcess(t, { args: ['--metrics', '127.0.0.1:0'] });
  // Said right after "serving on" (which startServerProcess waited for).
  const said = await eventually('the metrics line', async () => apart.stderr(), (err) => /metrics at/.test(err));
  const url = /^stratus: metrics at (http:\/\/\S+)$/m.exec(said)?.[1];
  t.ok(url && !url.startsWith(apart.url), `served apart from the API (${url})`);
  t.ok((await scrapeMetrics(url!)).family('stratus_commits_total'), 'the listener serves the server’s metrics');
  const onApi = await fetch(`${apart.url}/metrics`);
  t.equal(onApi.status, 401, 'the API address no longer answers /metrics without a token');
  await onApi.text();

  const off = await startServerProcess(t, { args: ['--metrics', 'off'] });
  const none = await fetch(`${off.url}/metrics`);
  t.equal(none.status, 401, '--metrics off: /metrics is not public');
  await none.text();
  await off.stop();
  t.notMatch(off.stderr(), /metrics at/, '--metrics off: no metrics line (all it said until it stopped)');

  const onByDefault = await startServerProcess(t);
  const byDefault = await eventually('the metrics line', async () => onByDefault.stderr(), (err) => /metrics at/.test(err));
  t.match(byDefault, new RegExp(`^stratus: metrics at ${onByDefault.url}/metrics$`, 'm'), 'by default at /metrics of the API address, and said so');

  for (const [args, why] of [
    [['serve', '--metrics', 'notanaddress'], /--metrics: not on, off or HOST:PORT: "notanaddress"/],
    [['mount', '/tmp/nowhere', '--server', 'http://127.0.0.1:1', '--metrics', 'notanaddress'], /--metrics: not HOST:PORT: "notanaddress"/],
    [['mount', '/tmp/nowhere', '--server', 'http://127.0.0.1:1', '--log-level', 'loud'], /--log-level: not a log level: "loud"/],
  ] as const) {
    refused(t, await stratusCli([...args]), why, `stratus ${args.join(' ')}`);
  }
});

t.test('up: one log — the embedded server’s lines are the drive’s (text on stderr, JSON in --log-file)', async (t) => {
  const dir = await tempDir(t, 'up-log');
  const mountpoint = path.join(dir, 'Stratus');
  const logFile = path.join(dir, 'up.log');
  const { child, stderr } = await spawnUntil(['up', mountpoint, '--data', path.join(dir, 'data'), '--listen', '127.0.0.1:0', '--cache', path.join(dir, 'cache'), '--log-file', logFile], /drive ready at/);
  const gone = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await gone;
    await forceUnmount(mountpoint);
  });
  await fs.writeFile(path.join(mountpoint, 'hello.txt'), 'hello');
  child.kill('SIGTERM');
  t.equal(await gone, 0, 'up stops with everything committed');

  const err = stderr();
  t.match(err, /^stratus: serving on http:\/\/\S+ \(data in /m, 'the server’s start is a plain line');
  t.match(err, /^stratus: drive ready at /m, 'so is the drive’s');
  t.ok(err.split('\n').filter(Boolean).every((l) => l.startsWith('stratus: ')), `every stderr line is one \`stratus: …\` line (no JSON, no stack):\n${err}`);
  const lines = (await fs.readFile(logFile, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { msg: string; component?: string; server_pid?: number });
  t.ok(lines.some((l) => l.component === 'server' && /^serving on /.test(l.msg) && typeof l.server_pid === 'number'), 'the log file has the server’s lines, marked as the server’s');
  t.ok(lines.some((l) => /^drive ready at /.test(l.msg)), 'and the drive’s, in the same file');
  t.ok(lines.some((l) => l.component === 'server' && /shutting down/.test(l.msg)), 'up to the server’s stop');
});
