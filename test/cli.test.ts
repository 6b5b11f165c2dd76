import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { StratusClient } from '../protocol/client.js';
import { startServerProcess, tempDir } from './helpers/drive.js';

/** The `stratus` command as a user runs it: the compiled bin (npm test builds it first). */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(root, 'dist', 'cli', 'main.js');
const run = promisify(execFile);

async function stratus(args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], { cwd });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** Starts `stratus serve` and resolves with its URL once it says it serves (no sleeping). */
function serve(args: string[], cwd: string): Promise<{ url: string; stop(): Promise<number | null> }> {
  const child = spawn(process.execPath, [bin, 'serve', ...args], { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  return new Promise((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => reject(new Error(`serve did not start in 20 s: ${err}`)), 20_000);
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      err += chunk;
      const match = /serving on (http:\/\/\S+)/.exec(err);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve({
          url: match[1],
          stop: () =>
            new Promise((done) => {
              child.once('exit', (code) => done(code));
              child.kill('SIGTERM');
            }),
        });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code}: ${err}`));
    });
  });
}

t.test('stratus user add --create prints the token as the last line, and stratus serve accepts it on the embedded default', async (t) => {
  const cwd = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-cli-'));
  t.teardown(() => fs.rm(cwd, { recursive: true, force: true }));
  const added = await stratus(['user', 'add', 'alice', '--create'], cwd);
  t.equal(added.code, 0, added.stderr);
  const token = added.stdout.trim().split('\n').at(-1)!;
  t.match(token, /^stx_[A-Za-z0-9_-]{43}$/);
  await fs.access(path.join(cwd, 'stratus-data', 'stratus.sqlite'));

  const server = await serve(['--listen', '127.0.0.1:0'], cwd);
  const client = new StratusClient({ server: server.url, token });
  t.teardown(() => client.close());
  const health = await fetch(`${server.url}/healthz`);
  t.equal(health.status, 200);
  t.match(await client.whoami(), { user: { id: /^[A-Za-z0-9_-]{16}$/, name: 'alice' }, device: { id: /^[A-Za-z0-9_-]{16}$/, name: 'first device' } });
  t.equal((await client.root()).kind, 'dir');

  const second = await stratus(['user', 'token', 'alice', '--device', 'laptop'], cwd);
  t.equal(second.code, 0, second.stderr);
  const laptop = new StratusClient({ server: server.url, token: second.stdout.trim().split('\n').at(-1)! });
  t.teardown(() => laptop.close());
  t.equal((await laptop.whoami()).device.name, 'laptop', 'a second device token for the same user works while the server runs');
  t.equal(await server.stop(), 0, 'SIGTERM stops serve cleanly');
});

t.test('stratus serve makes its data folder and a block folder of its own (--blocks DIR) mode 0700, whatever the umask', async (t) => {
  const root = await tempDir(t, 'serve-private');
  const data = path.join(root, 'data');
  const blocks = path.join(root, 'blocks');
  const before = process.umask(0o022);
  t.teardown(() => process.umask(before));
  await startServerProcess(t, { dataDir: data, blocks });
  t.equal((await fs.stat(data)).mode & 0o777, 0o700, 'data folder 0700 (the umask would give 0755)');
  t.equal((await fs.stat(blocks)).mode & 0o777, 0o700, 'block folder 0700: every user\'s file content is in it');
});

t.test('stratus gc frees the blocks of an emptied trash while stratus serve runs, and prints what it freed', async (t) => {
  const cwd = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-cli-'));
  t.teardown(() => fs.rm(cwd, { recursive: true, force: true }));
  const token = (await stratus(['user', 'add', 'gina', '--create'], cwd)).stdout.trim().split('\n').at(-1)!;
  const server = await serve(['--listen', '127.0.0.1:0', '--retention', '30d'], cwd);
  t.teardown(() => server.stop());
  const client = new StratusClient({ server: server.url, token });
  t.teardown(() => client.close());
  const root = await client.root();
  const f = await client.create({ parent_id: root.id, name: 'big.bin', kind: 'file' });
  const bytes = Buffer.alloc(3000, 7);
  const { blake3Hex } = await import('../protocol/hash.js');
  const hash = blake3Hex(bytes);
  await client.putBlock(hash, bytes);
  await client.commit(f.id, { base_version: 0, blocks: [{ hash, size: bytes.length }], size: bytes.length });
  await client.remove(f.id);
  t.same(await client.emptyTrash(), { purged: 1 });
  const kept = await stratus(['gc'], cwd);
  t.equal(kept.code, 0, kept.stderr);
  t.match(kept.stdout, /deleted 0,/, 'within the grace period (1 h) the block is kept');
  const freed = await stratus(['gc', '--grace', '1m'], cwd);
  t.equal(freed.code, 0, freed.stderr);
  t.match(freed.stdout, /examined 0 unreferenced block/, 'uploaded a moment ago: still within a 1-minute grace');
  const { openDatabase } = await import('../backend/db/connect.js');
  const db = await openDatabase(undefined, path.join(cwd, 'stratus-data'));
  await db('blocks').where({ hash }).update({ last_claimed_at: Date.now() - 120_000 });
  await db.destroy();
  const done = await stratus(['gc', '--grace', '1m'], cwd);
  t.equal(done.code, 0, done.stderr);
  t.match(done.stdout, /deleted 1, freed 2\.9\s?KB/, `the block is freed: ${done.stdout}`);
  await t.rejects(fs.access(path.join(cwd, 'stratus-data', 'blocks', hash.slice(0, 2), hash.slice(2, 4), hash)), 'its file is gone from the store');
});

t.test('failures exit non-zero with one clear line on stderr', async (t) => {
  const cwd = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-cli-'));
  t.teardown(() => fs.rm(cwd, { recursive: true, force: true }));
  t.equal((await stratus(['user', 'add', 'bob', '--create'], cwd)).code, 0);
  const cases: Array<[string[], RegExp]> = [
    [['user', 'add', 'bob'], /user "bob" already exists/],
    [['user', 'add', 'no/slash'], /user name must be/],
    [['user', 'token', 'nobody'], /no user "nobody"/],
    [['serve', '--listen', 'nonsense'], /--listen: not HOST:PORT: "nonsense"/],
    [['serve', '--db', 'mysql://x'], /unsupported --db URL/],
  ];
  for (const [args, message] of cases) {
    const result = await stratus(args, cwd);
    t.not(result.code, 0, args.join(' '));
    t.match(result.stderr, message, args.join(' '));
    t.equal(result.stderr.trim().split('\n').length, 1, `${args.join(' ')}: one line`);
  }
});

t.test('every command and flag has --help text', async (t) => {
  for (const args of [['--help'], ['serve', '--help'], ['user', 'add', '--help']]) {
    const result = await stratus(args, os.tmpdir());
    t.equal(result.code, 0);
    t.match(result.stdout, /Usage: stratus/);
  }
  t.match((await stratus(['serve', '--help'], os.tmpdir())).stdout, /--listen <host:port>/);
});
