import { execFile, spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { unmountIfMounted } from '../../mount/fuse/stale.js';

/** `stratus` commands as their own processes (so the bench, the server and a mount never share an event loop). */

const run = promisify(execFile);
/** dist/cli/main.js, from dist/scripts/bench/ (compiled) */
export const stratusBin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'cli', 'main.js');

/** `stratus user add NAME --create` in its own process (before the server: it makes the database); the token is the last line. */
export async function addUser(name: string, args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [stratusBin, 'user', 'add', name, '--create', ...args]);
  return stdout.trim().split('\n').at(-1)!;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/**
 * Spawns `cmd ARGS` (`name` in messages) and resolves once its stderr matches `ready`; rejects
 * (and kills it) if it exits or is not ready in time first.
 */
export function spawnUntil(
  cmd: string,
  args: string[],
  ready: RegExp,
  o: { name: string; env?: NodeJS.ProcessEnv; timeoutMs?: number },
): Promise<{ child: ChildProcess; match: RegExpExecArray; stderr(): string }> {
  const timeoutMs = o.timeoutMs ?? 60_000;
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: o.env ?? process.env });
  let err = '';
  let settled = false;
  return new Promise((resolve, reject) => {
    const fail = (why: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`${o.name} ${why}: ${err}`));
    };
    const timer = setTimeout(() => fail(`not ready in ${timeoutMs} ms`), timeoutMs);
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      err += chunk;
      const match = settled ? null : ready.exec(err);
      if (match) {
        settled = true;
        clearTimeout(timer);
        resolve({ child, match, stderr: () => err });
      }
    });
    child.once('exit', (code, signal) => fail(`exited (${code ?? signal})`));
  });
}

/** `stratus ARGS` until its stderr matches `ready` (see spawnUntil). */
function spawnStratus(args: string[], ready: RegExp, env?: NodeJS.ProcessEnv): ReturnType<typeof spawnUntil> {
  return spawnUntil(process.execPath, [stratusBin, ...args], ready, { name: `stratus ${args[0]}`, ...(env && { env: { ...process.env, ...env } }) });
}

/** SIGTERM, then wait for the exit. */
export async function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  await exited(child);
}

/** `stratus serve` as its own process; resolves once it serves. */
export async function startServe(args: string[], env?: NodeJS.ProcessEnv): Promise<{ url: string; stop(): Promise<void> }> {
  const { child, match } = await spawnStratus(['serve', '--listen', '127.0.0.1:0', ...args], /serving on (http:\/\/\S+)/, env);
  return { url: match[1]!, stop: () => terminate(child) };
}

export interface MountProcess {
  mountpoint: string;
  cacheDir: string;
  pid: number;
  /** SIGTERM (drains pending commits, unmounts), waits for the exit; unmounts by force if the mount is still there. */
  stop(): Promise<void>;
  stderr(): string;
}

/** `stratus mount` as its own process; resolves once the drive is ready. */
export async function startMount(opts: { mountpoint: string; server: string; token: string; cacheDir: string; cacheSize: string }): Promise<MountProcess> {
  const args = ['mount', opts.mountpoint, '--server', opts.server, '--token', opts.token, '--cache', opts.cacheDir, '--cache-size', opts.cacheSize];
  const { child, stderr } = await spawnStratus(args, /drive ready at/).catch(async (err: unknown) => {
    await unmountIfMounted(opts.mountpoint).catch(() => undefined);
    throw err;
  });
  return {
    mountpoint: opts.mountpoint,
    cacheDir: opts.cacheDir,
    pid: child.pid!,
    stderr,
    stop: async () => {
      await terminate(child);
      await unmountIfMounted(opts.mountpoint).catch(() => undefined);
    },
  };
}
