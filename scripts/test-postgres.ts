/**
 * Throwaway PostgreSQL cluster for tests (and for developers).
 *
 * Uses the server binaries of Debian's `postgresql` package: a fresh data dir
 * under os.tmpdir(), listening only on 127.0.0.1 at a free port, unix socket
 * inside the temp dir, durability switched off (fsync, synchronous_commit,
 * full_page_writes) because the data is thrown away anyway.
 *
 * When running as root, initdb/pg_ctl run as the `postgres` OS user
 * (PostgreSQL refuses to run as root).
 *
 * CLI: `node dist/scripts/test-postgres.js` starts a cluster, prints its url
 * on stdout and stops it on SIGINT/SIGTERM.
 */
import { execFile as execFileCb } from 'node:child_process';
import { constants as fsConstants, readFileSync, realpathSync, rmSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort } from './free-port.js';

const execFile = promisify(execFileCb);

export interface ThrowawayPostgres {
  /** `postgres://postgres@127.0.0.1:PORT/postgres` (trust auth, no password). */
  url: string;
  /** Immediate shutdown and removal of the temp dir. Safe to call more than once. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Receives progress lines (nothing is printed by default). */
  log?: (line: string) => void;
}

const NOT_FOUND_MESSAGE =
  'PostgreSQL server binaries not found (initdb/pg_ctl); install Debian\'s postgresql package ' +
  '(apt-get install -y --no-install-recommends postgresql)';

/** How many times a start is retried with a new port (another process may grab the free port first). */
const START_ATTEMPTS = 3;
const START_TIMEOUT_SECONDS = 30;

interface Binaries {
  initdb: string;
  pgCtl: string;
}

interface RunAs {
  /** null: run the binaries directly as the current user. */
  user: { name: string; uid: number; gid: number } | null;
}

async function isExecutable(file: string): Promise<boolean> {
  try {
    const st = await fs.stat(file);
    if (!st.isFile()) return false;
    await fs.access(file, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Compares "15", "16", "9.6" numerically, newest first. */
function compareVersionsDesc(a: string, b: string): number {
  const pa = a.split('.').map((x) => Number.parseInt(x, 10));
  const pb = b.split('.').map((x) => Number.parseInt(x, 10));
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? -1;
    const y = pb[i] ?? -1;
    const xn = Number.isNaN(x) ? -1 : x;
    const yn = Number.isNaN(y) ? -1 : y;
    if (xn !== yn) return yn - xn;
  }
  return b.localeCompare(a);
}

/**
 * initdb and pg_ctl from the same directory: first a PATH directory holding
 * both, else the newest /usr/lib/postgresql/<version>/bin (Debian does not
 * put them on PATH).
 */
async function findBinaries(): Promise<Binaries | null> {
  const candidates: string[] = [];
  for (const dir of (process.env['PATH'] ?? '').split(path.delimiter)) {
    if (dir) candidates.push(dir);
  }
  const debianRoot = '/usr/lib/postgresql';
  try {
    const versions = (await fs.readdir(debianRoot)).sort(compareVersionsDesc);
    for (const v of versions) candidates.push(path.join(debianRoot, v, 'bin'));
  } catch {
    // no Debian postgresql installed
  }
  for (const dir of candidates) {
    const initdb = path.join(dir, 'initdb');
    const pgCtl = path.join(dir, 'pg_ctl');
    if ((await isExecutable(initdb)) && (await isExecutable(pgCtl))) {
      // Resolve symlinks (e.g. /usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb)
      // so both come from the same installation.
      const realInitdb = await fs.realpath(initdb);
      const realPgCtl = await fs.realpath(pgCtl);
      return { initdb: realInitdb, pgCtl: realPgCtl };
    }
  }
  return null;
}

async function resolveRunAs(): Promise<RunAs> {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return { user: null };
  let uid: number;
  let gid: number;
  try {
    const u = await execFile('id', ['-u', 'postgres']);
    const g = await execFile('id', ['-g', 'postgres']);
    uid = Number.parseInt(u.stdout.trim(), 10);
    gid = Number.parseInt(g.stdout.trim(), 10);
  } catch {
    throw new Error(
      'Running as root but there is no "postgres" OS user to run the PostgreSQL server as ' +
        '(Debian\'s postgresql package creates it: apt-get install -y --no-install-recommends postgresql)',
    );
  }
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) {
    throw new Error('Could not determine uid/gid of the "postgres" OS user');
  }
  return { user: { name: 'postgres', uid, gid } };
}

function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C', LANG: 'C' };
  // Make sure nothing in the caller's environment redirects the tools elsewhere.
  for (const k of Object.keys(env)) {
    if (k.startsWith('PG')) delete env[k];
  }
  return env;
}

/** Runs a PostgreSQL tool, as the postgres user when we are root. */
async function runTool(
  runAs: RunAs,
  file: string,
  args: string[],
): Promise<{ stdout: string; stderr: string }> {
  const opts = { cwd: '/', env: childEnv(), maxBuffer: 16 * 1024 * 1024 };
  if (runAs.user) {
    return execFile('runuser', ['-u', runAs.user.name, '--', file, ...args], opts);
  }
  return execFile(file, args, opts);
}

function describeExecError(err: unknown): string {
  if (err && typeof err === 'object') {
    const e = err as { message?: string; stderr?: unknown; stdout?: unknown };
    const parts: string[] = [];
    const stderr = typeof e.stderr === 'string' ? e.stderr.trim() : '';
    const stdout = typeof e.stdout === 'string' ? e.stdout.trim() : '';
    if (stderr) parts.push(stderr);
    else if (stdout) parts.push(stdout);
    else if (e.message) parts.push(e.message);
    return parts.join('\n');
  }
  return String(err);
}

async function tailFile(file: string, lines = 20): Promise<string> {
  try {
    const text = await fs.readFile(file, 'utf8');
    return text.trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/**
 * Checks that a PostgreSQL server answers on host:port: sends an SSLRequest
 * and expects the one-byte answer 'S' or 'N'.
 */
function probe(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let done = false;
    const finish = (ok: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    sock.once('connect', () => {
      const req = Buffer.alloc(8);
      req.writeInt32BE(8, 0);
      req.writeInt32BE(80877103, 4); // SSLRequest code
      sock.write(req);
    });
    sock.once('data', (buf: Buffer) => {
      const c = buf[0];
      finish(c === 0x53 /* S */ || c === 0x4e /* N */);
    });
    sock.once('error', () => finish(false));
    sock.once('close', () => finish(false));
  });
}

async function waitUntilAccepting(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe(port, 1000)) return;
    if (Date.now() > deadline) {
      throw new Error(`PostgreSQL did not accept connections on 127.0.0.1:${port} within ${timeoutMs} ms`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

function quoteConf(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

async function readPostmasterPid(dataDir: string): Promise<number | null> {
  try {
    const first = (await fs.readFile(path.join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0] ?? '';
    const pid = Number.parseInt(first.trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Stops the server in dataDir if it runs; never throws. */
async function stopServer(runAs: RunAs, pgCtl: string, dataDir: string, log: (l: string) => void): Promise<void> {
  const pid = await readPostmasterPid(dataDir);
  if (pid === null) return; // never started, or already gone
  try {
    await runTool(runAs, pgCtl, ['-D', dataDir, '-m', 'immediate', '-w', '-t', '20', 'stop']);
    return;
  } catch (err) {
    if (!isAlive(pid)) return; // e.g. it was already shut down by a signal
    log(`pg_ctl stop failed, killing postmaster ${pid}: ${describeExecError(err)}`);
  }
  // Fallback: SIGQUIT is PostgreSQL's "immediate shutdown"; SIGKILL as a last resort.
  for (const [sig, waitMs] of [['SIGQUIT', 5000], ['SIGKILL', 5000]] as const) {
    try {
      process.kill(pid, sig);
    } catch {
      return;
    }
    const deadline = Date.now() + waitMs;
    while (Date.now() < deadline) {
      if (!isAlive(pid)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

export async function startThrowawayPostgres(opts?: StartOptions): Promise<ThrowawayPostgres> {
  const log = opts?.log ?? ((): void => {});
  const t0 = performance.now();

  const bins = await findBinaries();
  if (!bins) throw new Error(NOT_FOUND_MESSAGE);
  const runAs = await resolveRunAs();
  log(`using ${bins.initdb} and ${bins.pgCtl}${runAs.user ? ' (as OS user postgres)' : ''}`);

  const tmpDir = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-pg-'));
  const dataDir = path.join(tmpDir, 'data');
  const socketDir = path.join(tmpDir, 'socket');
  const logFile = path.join(tmpDir, 'postgres.log');

  let stopped = false;
  let stopPromise: Promise<void> | null = null;

  // Safety net: if the process exits without stop(), do not leave a postmaster
  // behind (only synchronous work is possible in an 'exit' handler).
  const onExit = (): void => {
    if (stopped) return;
    const pid = readPostmasterPidSync(dataDir);
    if (pid !== null) {
      try {
        process.kill(pid, 'SIGQUIT'); // immediate shutdown
      } catch {
        // already gone
      }
    }
    try {
      rmSync(tmpDir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // best effort
    }
  };
  process.once('exit', onExit);

  const cleanup = async (): Promise<void> => {
    process.removeListener('exit', onExit);
    await stopServer(runAs, bins.pgCtl, dataDir, log);
    await fs.rm(tmpDir, { recursive: true, force: true, maxRetries: 3 });
    stopped = true;
  };

  const stop = (): Promise<void> => {
    stopPromise ??= cleanup();
    return stopPromise;
  };

  try {
    await fs.mkdir(socketDir);
    if (runAs.user) {
      await fs.chown(tmpDir, runAs.user.uid, runAs.user.gid);
      await fs.chown(socketDir, runAs.user.uid, runAs.user.gid);
    }

    try {
      await runTool(runAs, bins.initdb, [
        '-D', dataDir,
        '-E', 'UTF8',
        '--locale=C',
        '-A', 'trust',
        '-U', 'postgres',
        '--no-sync',
      ]);
    } catch (err) {
      throw new Error(`initdb failed: ${describeExecError(err)}`);
    }
    const tInit = performance.now();
    log(`initdb done in ${Math.round(tInit - t0)} ms (${dataDir})`);

    const confFile = path.join(dataDir, 'postgresql.conf');
    const baseConf = await fs.readFile(confFile, 'utf8');

    let lastError: unknown = null;
    for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
      const port = await freePort();
      // Settings appended last win over the defaults written by initdb.
      await fs.writeFile(
        confFile,
        baseConf +
          [
            '',
            '# --- stratus throwaway test cluster ---',
            "listen_addresses = '127.0.0.1'",
            `port = ${port}`,
            `unix_socket_directories = ${quoteConf(socketDir)}`,
            'max_connections = 200',
            'fsync = off',
            'synchronous_commit = off',
            'full_page_writes = off',
            '',
          ].join('\n'),
      );
      try {
        await runTool(runAs, bins.pgCtl, [
          '-D', dataDir,
          '-l', logFile,
          '-w',
          '-t', String(START_TIMEOUT_SECONDS),
          'start',
        ]);
        await waitUntilAccepting(port, START_TIMEOUT_SECONDS * 1000);
        const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
        log(`PostgreSQL ready at ${url} in ${Math.round(performance.now() - t0)} ms`);
        return { url, stop };
      } catch (err) {
        lastError = err;
        const tail = await tailFile(logFile);
        log(`start attempt ${attempt} on port ${port} failed: ${describeExecError(err)}${tail ? `\n${tail}` : ''}`);
        await stopServer(runAs, bins.pgCtl, dataDir, log);
      }
    }
    const tail = await tailFile(logFile);
    throw new Error(
      `pg_ctl start failed: ${describeExecError(lastError)}${tail ? `\n--- server log ---\n${tail}` : ''}`,
    );
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
}

function readPostmasterPidSync(dataDir: string): number | null {
  try {
    const first = readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0] ?? '';
    const pid = Number.parseInt(first.trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/* ------------------------------------------------------------------------ */
/* CLI entry: node dist/scripts/test-postgres.js                            */
/* ------------------------------------------------------------------------ */

function isMain(): boolean {
  const argv1 = process.argv[1];
  if (!argv1) return false;
  try {
    return realpathSync(path.resolve(argv1)) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

async function cliMain(): Promise<void> {
  const pg = await startThrowawayPostgres({ log: (l) => process.stderr.write(`[test-postgres] ${l}\n`) });
  process.stdout.write(`${pg.url}\n`);
  process.stderr.write('[test-postgres] running; press Ctrl-C (or send SIGTERM) to stop\n');
  const keepAlive = setInterval(() => {}, 1 << 30);
  let stopping = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`[test-postgres] ${sig}: stopping\n`);
    pg.stop().then(
      () => {
        clearInterval(keepAlive);
        process.exit(0);
      },
      (err: unknown) => {
        process.stderr.write(`[test-postgres] stop failed: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

if (isMain()) {
  cliMain().catch((err: unknown) => {
    process.stderr.write(`[test-postgres] ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
