import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { homedir, hostname, userInfo } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { openDatabase } from '../backend/db/connect.js';
import { addDevice, createUser } from '../backend/services/accounts.js';
import { cleanStaleMount } from '../mount/fuse/stale.js';
import { ApiError } from '../protocol/errors.js';
import { DEFAULT_CACHE_SIZE, EXIT_CODES_HELP, EXIT_PENDING, parseSeconds, parseSize, runMount } from './mount.js';

interface LocalCredentials {
  user: string;
  token: string;
}

/** The local user of an embedded server: created once, its token kept (mode 600) in the data folder. */
async function localCredentials(dataDir: string): Promise<LocalCredentials> {
  const file = path.join(dataDir, 'local-user.json');
  try {
    return JSON.parse(await readFile(file, 'utf8')) as LocalCredentials;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await mkdir(dataDir, { recursive: true });
  const name = (userInfo().username || 'me').replace(/[^A-Za-z0-9._@-]/g, '_').replace(/^[^A-Za-z0-9]+/, '') || 'me';
  const device = hostname().replace(/[^\x20-\x7e]/g, '_').slice(0, 64) || 'this computer';
  const db = await openDatabase(undefined, dataDir);
  let created;
  try {
    created = await createUser(db, name, device).catch(async (err: unknown) => {
      if (err instanceof ApiError && err.code === 'exists') return addDevice(db, name, device);
      throw err;
    });
  } finally {
    await db.destroy();
  }
  const creds: LocalCredentials = { user: name, token: created.token };
  await writeFile(file, `${JSON.stringify(creds)}\n`, { mode: 0o600 });
  return creds;
}

interface EmbeddedServer {
  url: string;
  child: ChildProcess;
  /** Stops the server (closes its stdin) and resolves once it has exited. */
  stop(): Promise<void>;
}

/** How long a server told to stop may take before it is killed. */
const SERVER_STOP_MS = 30_000;

/**
 * Starts `stratus serve` as a child process and resolves once it serves. The drive needs it until
 * it has drained (invariant 5), so the child is out of the terminal's reach: its own session and
 * process group (`detached`), so Ctrl-C (SIGINT to the foreground process group) reaches `up`
 * only, and `--until-stdin-closes`, so it ignores stray SIGINT/SIGTERM and stops when its stdin —
 * a pipe from this process — closes. That happens when `up` stops it after the unmount, and also
 * when `up` dies any other way (even SIGKILL): no orphaned server keeps the port and the data.
 */
function startServerProcess(dataDir: string, listen: string): Promise<EmbeddedServer> {
  const main = fileURLToPath(new URL('./main.js', import.meta.url));
  const child = spawn(process.execPath, [main, 'serve', '--data', dataDir, '--listen', listen, '--until-stdin-closes'], {
    stdio: ['pipe', 'inherit', 'pipe'],
    detached: true,
  });
  // The server gone first (it crashed) must not make a write to its stdin kill `up`.
  child.stdin!.on('error', () => undefined);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.stdin!.end();
    const timer = setTimeout(() => child.kill('SIGKILL'), SERVER_STOP_MS);
    await exited;
    clearTimeout(timer);
  };
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stderr! });
    let ready = false;
    lines.on('line', (line) => {
      process.stderr.write(`${line}\n`);
      const m = /serving on (\S+)/.exec(line);
      if (m && !ready) {
        ready = true;
        resolve({ url: m[1]!, child, stop });
      }
    });
    child.once('exit', (code, signal) => {
      if (!ready) reject(new Error(`the embedded server exited (${code ?? signal}) before serving`));
      else process.stderr.write(`stratus: the embedded server exited (${code === null ? signal : `code ${code}`})\n`);
    });
  });
}

export function upCommand(): Command {
  return new Command('up')
    .description(`one command for a working drive: embedded server + a local user + the mount (default ~/Stratus); Ctrl-C commits what is pending, unmounts, then stops the server (exit code ${EXIT_PENDING} if commits were left pending)`)
    .argument('[mountpoint]', 'where the drive appears', path.join(homedir(), 'Stratus'))
    .option('--data <dir>', 'data folder of the embedded server', './stratus-data')
    .option('--listen <host:port>', 'address of the embedded server', '127.0.0.1:7420')
    .option('--cache <dir>', 'cache folder of the mount (default: ~/.cache/stratus/SERVER_USER)')
    .option('--cache-size <size>', 'bound of the block cache on disk', parseSize, parseSize(DEFAULT_CACHE_SIZE))
    .option('--drain-timeout <seconds>', 'how long to wait for pending commits at exit', parseSeconds, 60)
    .addHelpText('after', EXIT_CODES_HELP)
    .action(async (mountpoint: string, opts: { data: string; listen: string; cache?: string; cacheSize: number; drainTimeout: number }) => {
      const dataDir = path.resolve(opts.data);
      // A drive that did not finish (killed, Ctrl-C twice) left a dead mount: mkdir would fail on it (ENOTCONN).
      await cleanStaleMount(mountpoint);
      await mkdir(mountpoint, { recursive: true });
      const creds = await localCredentials(dataDir);
      const server = await startServerProcess(dataDir, opts.listen);
      try {
        // The server stops only after the drive has drained and unmounted.
        await runMount({ mountpoint, server: server.url, token: creds.token, cacheDir: opts.cache, cacheSize: opts.cacheSize }, opts.drainTimeout, server.stop);
      } catch (err) {
        await server.stop();
        throw err;
      }
    });
}
