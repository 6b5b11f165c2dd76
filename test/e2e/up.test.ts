import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { bin, forceUnmount, run, tempDir } from '../helpers/drive.js';

/*
 * The first command a new user runs (`npm start` = `stratus up`): an embedded server, a local
 * user and the drive in one process tree; `stratus unmount` ends it cleanly, and what was written
 * is there at the next `up`. Plus the one-line failures of `stratus mount`.
 */

function startUp(t: { teardown(fn: () => unknown): void }, mountpoint: string, dataDir: string, cacheDir: string) {
  const child = spawn(process.execPath, [bin, 'up', mountpoint, '--data', dataDir, '--listen', '127.0.0.1:0', '--cache', cacheDir], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    await exited;
    await forceUnmount(mountpoint);
  });
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`up not ready in 30 s: ${err}`)), 30_000);
    child.stderr.on('data', () => {
      if (!/drive ready at/.test(err)) return;
      clearTimeout(timer);
      resolve();
    });
    void exited.then((code) => reject(new Error(`up exited (${code}) before ready: ${err}`)));
  });
  return { ready, exited, stderr: () => err };
}

t.test('stratus up gives a working drive; stratus unmount drains it and stops the embedded server', async (t) => {
  const base = await tempDir(t, 'up');
  const mountpoint = path.join(base, 'Stratus'); // does not exist yet: up creates it
  const dataDir = path.join(base, 'data');
  const cacheDir = path.join(base, 'cache');

  const first = startUp(t, mountpoint, dataDir, cacheDir);
  await first.ready;
  await fs.mkdir(path.join(mountpoint, 'docs'));
  await fs.writeFile(path.join(mountpoint, 'docs', 'hello.txt'), 'hello from up\n');
  t.equal(await fs.readFile(path.join(mountpoint, 'docs', 'hello.txt'), 'utf8'), 'hello from up\n', 'the drive reads back what was written');
  const creds = JSON.parse(await fs.readFile(path.join(dataDir, 'local-user.json'), 'utf8')) as { user: string; token: string };
  t.match(creds.token, /^stx_/, 'the local user token is kept in the data folder');
  t.equal((await fs.stat(path.join(dataDir, 'local-user.json'))).mode & 0o777, 0o600, 'readable by its owner only');

  await run(process.execPath, [bin, 'unmount', mountpoint]);
  t.equal(await first.exited, 0, 'up exits 0 after stratus unmount');
  t.match(first.stderr(), /unmounted/, 'it says it unmounted');
  t.match(first.stderr(), /embedded server exited \(code 0\)/, 'the embedded server was stopped cleanly');
  t.same(await fs.readdir(mountpoint), [], 'the mountpoint is a plain empty folder again');

  // Same data folder, fresh cache: the content came from the server, not from a local leftover.
  const second = startUp(t, mountpoint, dataDir, path.join(base, 'cache2'));
  await second.ready;
  t.equal(await fs.readFile(path.join(mountpoint, 'docs', 'hello.txt'), 'utf8'), 'hello from up\n', 'the next up shows the file (committed at the first shutdown)');
  t.equal(JSON.parse(await fs.readFile(path.join(dataDir, 'local-user.json'), 'utf8')).token, creds.token, 'the same local user is reused');
});

t.test('stratus mount fails with one clear line', async (t) => {
  const base = await tempDir(t, 'mount-errors');
  const full = path.join(base, 'full');
  await fs.mkdir(full);
  await fs.writeFile(path.join(full, 'x'), 'x');
  const cases: [string, string[], RegExp][] = [
    ['no token', ['mount', full, '--server', 'http://127.0.0.1:9'], /no token: give --token or set STRATUS_TOKEN/],
    ['missing mountpoint', ['mount', path.join(base, 'nope'), '--server', 'http://127.0.0.1:9', '--token', 'stx_x'], /mountpoint .*nope does not exist/],
    ['mountpoint not empty', ['mount', full, '--server', 'http://127.0.0.1:9', '--token', 'stx_x'], /mountpoint .*full is not an empty directory/],
    ['bad cache size', ['mount', full, '--server', 'http://127.0.0.1:9', '--token', 'stx_x', '--cache-size', 'lots'], /not a size: lots/],
  ];
  for (const [what, args, message] of cases) {
    const res = await run(process.execPath, [bin, ...args], { env: { ...process.env, STRATUS_TOKEN: '' } }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    t.not(res.code, 0, `${what}: exits non-zero`);
    t.match(res.stderr, message, `${what}: says why`);
    t.equal(res.stderr.trim().split('\n').filter((l) => !l.startsWith('(run with')).length, 1, `${what}: in one line`);
  }
  t.same(await fs.readdir(full), ['x'], 'the refused mountpoint is untouched');
});
