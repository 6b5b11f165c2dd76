import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { relogLine } from './relog.js';

/**
 * The embedded server of `stratus up`: a `stratus serve` child process, kept running while the
 * drive runs (restarted with back-off if it dies, on the same address, which the drive keeps
 * using), stopped after the drive has drained.
 */

export interface EmbeddedServer {
  /** Its URL (the same across restarts). */
  url: string;
  /** The pid of the server process running now (undefined between a crash and its restart). */
  readonly pid: number | undefined;
  /** Stops the server (closes its stdin), no more restarts; resolves once it has exited. */
  stop(): Promise<void>;
}

/** Restarts: the first after FIRST_DELAY_MS, doubling up to MAX_DELAY_MS; given up after GIVE_UP_AFTER failures in a row. */
export const RESTART = {
  firstDelayMs: 250,
  maxDelayMs: 30_000,
  /** Failures in a row (a server that dies before serving, or within STEADY_MS of it) before giving up. */
  giveUpAfter: 5,
  /** A server that served this long before dying starts the count afresh. */
  steadyMs: 60_000,
} as const;

/** How long a server told to stop may take before it is killed. */
const SERVER_STOP_MS = 30_000;

interface ServerProcess {
  url: string;
  child: ChildProcess;
  readyAt: number;
  /** Resolves with how it ended ("code 0", "SIGKILL"). */
  exited: Promise<string>;
  stop(): Promise<void>;
}

/**
 * Starts `stratus serve` as a child process and resolves once it serves. The drive needs it until
 * it has drained (invariant 5), so the child is out of the terminal's reach: its own session and
 * process group (`detached`), so Ctrl-C (SIGINT to the foreground process group) reaches `up`
 * only, and `--until-stdin-closes`, so it ignores stray SIGINT/SIGTERM and stops when its stdin —
 * a pipe from this process — closes. That happens when `up` stops it after the unmount, and also
 * when `up` dies any other way (even SIGKILL): no orphaned server keeps the port and the data.
 */
function startServerProcess(dataDir: string, listen: string, log?: Logger): Promise<ServerProcess> {
  const main = fileURLToPath(new URL('./main.js', import.meta.url));
  // With a logger, the server logs JSON lines that are shown (and written to --log-file) as `up`'s own.
  const logArgs = log ? ['--log-format', 'json', '--log-level', log.level] : [];
  // `--db '' --blocks ''` (empty: the defaults, SQLite and blocks/ in the data folder) on the command
  // line: a db or blocks meant for `stratus serve` (STRATUS_DB, the config file's [serve]) must not
  // move the embedded server off the SQLite file its local user is in.
  const store = ['--db', '', '--blocks', ''];
  const child = spawn(process.execPath, [main, 'serve', '--data', dataDir, '--listen', listen, ...store, '--until-stdin-closes', ...logArgs], {
    stdio: ['pipe', 'inherit', 'pipe'],
    detached: true,
  });
  // The server gone first (it crashed) must not make a write to its stdin kill `up`.
  child.stdin!.on('error', () => undefined);
  const exited = new Promise<string>((resolve) => child.once('exit', (code, signal) => resolve(code === null ? String(signal) : `code ${code}`)));
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
      const msg = log ? relogLine(log, line) : line;
      if (!log) process.stderr.write(`${line}\n`);
      const m = /serving on (\S+)/.exec(msg);
      if (m && !ready) {
        ready = true;
        resolve({ url: m[1]!, child, readyAt: Date.now(), exited, stop });
      }
    });
    void exited.then((how) => {
      if (!ready) reject(new Error(`the embedded server exited (${how}) before serving`));
    });
  });
}

/** Starts the embedded server and keeps it running until stop(). */
export async function startEmbeddedServer(dataDir: string, listen: string, say: (msg: string) => void, log?: Logger): Promise<EmbeddedServer> {
  let current: ServerProcess | undefined = await startServerProcess(dataDir, listen, log);
  const url = current.url;
  // Restarts listen where the first one does (with `--listen HOST:0`, the port it got).
  const address = new URL(url).host;
  let stopping = false;
  let failures = 0;
  let timer: NodeJS.Timeout | undefined;
  let starting: Promise<void> | undefined;

  const died = (how: string, ranMs: number) => {
    current = undefined;
    if (stopping) return;
    failures = ranMs >= RESTART.steadyMs ? 1 : failures + 1;
    if (failures > RESTART.giveUpAfter) {
      say(`the embedded server failed ${failures} times in a row (last: ${how}); not restarting it: what you write stays queued until a server answers on ${url}`);
      return;
    }
    const delay = Math.min(RESTART.maxDelayMs, RESTART.firstDelayMs * 2 ** (failures - 1));
    say(`the embedded server exited (${how}); restarting it in ${delay / 1000} s`);
    timer = setTimeout(() => (starting = restart()), delay);
  };
  const watch = (proc: ServerProcess) => {
    void proc.exited.then((how) => {
      if (stopping) say(`the embedded server exited (${how})`);
      died(how, Date.now() - proc.readyAt);
    });
  };
  const restart = async () => {
    if (stopping) return;
    try {
      const proc = await startServerProcess(dataDir, address, log);
      current = proc;
      say(`the embedded server was restarted (pid ${proc.child.pid})`);
      watch(proc);
      if (stopping) await proc.stop();
    } catch (err) {
      died((err as Error).message.replace(/^the embedded server exited \((.*)\) before serving$/, '$1 before serving'), 0);
    }
  };
  watch(current);

  return {
    url,
    get pid() {
      return current?.child.pid;
    },
    stop: async () => {
      stopping = true;
      clearTimeout(timer);
      await starting;
      await current?.stop();
    },
  };
}
