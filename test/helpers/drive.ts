import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { StratusClient } from '../../protocol/client.js';
import type { NodeInfo } from '../../protocol/types.js';

/**
 * End-to-end fixtures: a real `stratus serve` process and real `stratus mount` processes on their
 * own temp mountpoints. Everything started here is stopped and unmounted in the test's teardown,
 * also when the test fails.
 */

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const bin = path.join(root, 'dist', 'cli', 'main.js');
export const run = promisify(execFile);

interface Teardown {
  teardown(fn: () => unknown): void;
}

export async function tempDir(t: Teardown, prefix: string): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), `stratus-${prefix}-`));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Spawns `stratus ARGS` and resolves once a line of its stderr matches `ready` (no sleeping). */
function spawnUntil(args: string[], ready: RegExp, timeoutMs = 30_000): Promise<{ child: ChildProcess; match: RegExpExecArray; stderr: () => string }> {
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
    if (process.env.STRATUS_TEST_VERBOSE) process.stderr.write(chunk);
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`stratus ${args[0]} not ready in ${timeoutMs} ms: ${err}`)), timeoutMs);
    const onData = () => {
      const m = ready.exec(err);
      if (!m) return;
      clearTimeout(timer);
      child.stderr!.off('data', onData);
      resolve({ child, match: m, stderr: () => err });
    };
    child.stderr!.on('data', onData);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`stratus ${args[0]} exited (${code ?? signal}) before ready: ${err}`));
    });
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

export interface ServerProcess {
  url: string;
  dataDir: string;
  addUser(name: string): Promise<{ token: string; client: StratusClient }>;
  /** Bytes of block files the server holds (what uploads added). */
  blockBytes(): Promise<number>;
  stop(): Promise<void>;
}

export async function startServerProcess(t: Teardown): Promise<ServerProcess> {
  const dataDir = await tempDir(t, 'server');
  const { child, match } = await spawnUntil(['serve', '--data', dataDir, '--listen', '127.0.0.1:0'], /serving on (http:\/\/\S+)/);
  const clients: StratusClient[] = [];
  const stop = async () => {
    await Promise.all(clients.map((c) => c.close()));
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited(child);
  };
  t.teardown(stop);
  const url = match[1]!;
  return {
    url,
    dataDir,
    async addUser(name) {
      const { stdout } = await run(process.execPath, [bin, 'user', 'add', name, '--data', dataDir]);
      const token = stdout.trim().split('\n').pop()!;
      const client = new StratusClient({ server: url, token });
      clients.push(client);
      return { token, client };
    },
    blockBytes: () => duBytes(path.join(dataDir, 'blocks')),
    stop,
  };
}

export interface Drive {
  mountpoint: string;
  cacheDir: string;
  child: ChildProcess;
  /** Path inside the mount. */
  p(...parts: string[]): string;
  /** SIGTERM: drains pending commits, unmounts, waits for the process to exit. */
  stop(): Promise<number | null>;
  /** kill -9 (a crash): leaves a dead mount behind, like a real crash would. */
  kill(): Promise<void>;
  stderr(): string;
}

export interface DriveOptions {
  cacheDir?: string;
  cacheSize?: string;
  device?: string;
  mountpoint?: string;
}

export async function mountDrive(t: Teardown, server: ServerProcess, token: string, opts: DriveOptions = {}): Promise<Drive> {
  const mountpoint = opts.mountpoint ?? (await tempDir(t, 'mnt'));
  const cacheDir = opts.cacheDir ?? (await tempDir(t, 'cache'));
  const args = ['mount', mountpoint, '--server', server.url, '--token', token, '--cache', cacheDir, '--cache-size', opts.cacheSize ?? '4GB'];
  if (opts.device) args.push('--device', opts.device);
  const { child, stderr } = await spawnUntil(args, /drive ready at/);
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    return exited(child);
  };
  // Always leave the mountpoint unmounted, even when the test failed half-way.
  t.teardown(async () => {
    await stop();
    await forceUnmount(mountpoint);
  });
  return {
    mountpoint,
    cacheDir,
    child,
    p: (...parts) => path.join(mountpoint, ...parts),
    stop,
    kill: async () => {
      child.kill('SIGKILL');
      await exited(child);
    },
    stderr,
  };
}

export async function forceUnmount(mountpoint: string): Promise<void> {
  const mounts = await fs.readFile('/proc/self/mountinfo', 'utf8');
  if (!mounts.split('\n').some((l) => l.split(' ')[4] === mountpoint)) return;
  await run('fusermount', ['-uz', mountpoint]).catch(() => run('umount', ['-l', mountpoint]).catch(() => undefined));
}

/** Bytes of regular files under a folder (0 when it does not exist). */
export async function duBytes(dir: string): Promise<number> {
  let total = 0;
  let entries;
  try {
    entries = await fs.readdir(dir, { withFileTypes: true, recursive: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    if (!e.isFile()) continue;
    const st = await fs.stat(path.join(e.parentPath, e.name)).catch(() => undefined);
    if (st) total += st.size;
  }
  return total;
}

/** The node at a path of the user's tree, straight from the server (not through a mount). */
export async function remoteNode(client: StratusClient, p: string): Promise<NodeInfo | undefined> {
  let node = await client.root();
  for (const part of p.split('/').filter(Boolean)) {
    const next = (await client.allChildren(node.id)).find((c) => c.name === part);
    if (!next) return undefined;
    node = next;
  }
  return node;
}

/** Runs a shell command line (bash -c) in `cwd`; rejects with its stderr on failure. */
export async function sh(cmd: string, cwd: string, env: NodeJS.ProcessEnv = {}): Promise<string> {
  const { stdout } = await run('bash', ['-c', cmd], { cwd, env: { ...process.env, ...env }, maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}
