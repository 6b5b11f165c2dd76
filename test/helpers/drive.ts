import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { StratusClient } from '../../protocol/client.js';
import type { MountStatus } from '../../mount/status.js';
import { blake3Hex } from '../../protocol/hash.js';
import type { BlockRef, NodeInfo } from '../../protocol/types.js';

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

/** Spawns `stratus ARGS` (in `cwd`, with `env`) and resolves once a line of its stderr matches `ready` (no sleeping). */
export function spawnUntil(
  args: string[],
  ready: RegExp,
  timeoutMs = 30_000,
  opts: { cwd?: string; env?: NodeJS.ProcessEnv } & Partial<RunAs> = {},
): Promise<{ child: ChildProcess; match: RegExpExecArray; stderr: () => string }> {
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'ignore', 'pipe'], ...opts });
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
  /** HOST:PORT it listens on (give it back as `listen` to restart on the same address). */
  listen: string;
  /** The `--db` URL when the metadata is in PostgreSQL. */
  db?: string;
  child: ChildProcess;
  addUser(name: string): Promise<{ token: string; client: StratusClient }>;
  /** Another device (token) of an existing user: `stratus user token NAME --device DEVICE`. */
  addDevice(user: string, device: string): Promise<{ token: string; client: StratusClient }>;
  /** Bytes of block files the server holds (what uploads added). */
  blockBytes(): Promise<number>;
  stop(): Promise<void>;
  /** kill -9 (a crash of the backend); resolves once the process is gone. */
  kill(): Promise<void>;
  stderr(): string;
}

export interface ServerOptions {
  /** Data folder (default: a fresh temp folder, removed at teardown; a given one is left alone). */
  dataDir?: string;
  /** HOST:PORT (default 127.0.0.1:0, a free port); a restart passes the previous `listen`. */
  listen?: string;
  /** `--db postgres://…` */
  db?: string;
  /** `--blocks DIR` (a block folder several servers may share) */
  blocks?: string;
  /** More flags of `stratus serve` (e.g. `--metrics off`). */
  args?: string[];
}

export async function startServerProcess(t: Teardown, opts: ServerOptions = {}): Promise<ServerProcess> {
  const dataDir = opts.dataDir ?? (await tempDir(t, 'server'));
  const args = ['serve', '--data', dataDir, '--listen', opts.listen ?? '127.0.0.1:0'];
  if (opts.db) args.push('--db', opts.db);
  if (opts.blocks) args.push('--blocks', opts.blocks);
  if (opts.args) args.push(...opts.args);
  const { child, match, stderr } = await spawnUntil(args, /serving on (http:\/\/\S+)/);
  const clients: StratusClient[] = [];
  // A server stopped with SIGTERM exits 0 (its clean shutdown is part of what every test using it checks).
  const stop = async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const code = await exited(child);
    if (code !== 0) throw new Error(`stratus serve exited ${code} on SIGTERM: ${stderr()}`);
  };
  t.teardown(stop);
  const url = match[1]!;
  const dbArgs = ['--data', dataDir, ...(opts.db ? ['--db', opts.db] : [])];
  const tokenOf = async (args: string[]) => {
    const { stdout } = await run(process.execPath, [bin, 'user', ...args, ...dbArgs]);
    const token = stdout.trim().split('\n').pop()!;
    const client = new StratusClient({ server: url, token });
    clients.push(client);
    return { token, client };
  };
  return {
    url,
    dataDir,
    listen: new URL(url).host,
    ...(opts.db !== undefined && { db: opts.db }),
    child,
    addUser: (name) => tokenOf(['add', name]),
    addDevice: (user, device) => tokenOf(['token', user, '--device', device]),
    blockBytes: () => duBytes(path.join(opts.blocks ?? path.join(dataDir, 'blocks'))),
    stop,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited(child);
    },
    stderr,
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
  /** `--server` to use instead of the server's own URL (e.g. a test/helpers/proxy.ts in between). */
  serverUrl?: string;
  /** `--drain-timeout` seconds (how long SIGTERM waits for pending commits; default the CLI's). */
  drainTimeout?: number;
  /** More flags of `stratus mount` (e.g. `--metrics 127.0.0.1:0`, `--log-file F`). */
  args?: string[];
  /** Run the mount as this normal user (its mountpoint and cache folder must be that user's). */
  as?: RunAs;
}

/** A process run as another (normal) user: its ids and environment (test/helpers/system-user.ts makes one). */
export interface RunAs {
  uid: number;
  gid: number;
  env: NodeJS.ProcessEnv;
}

/** Any server a drive can mount: a `stratus serve` process or an in-process backend. */
export type DriveServer = Pick<ServerProcess, 'url'>;

export async function mountDrive(t: Teardown, server: DriveServer, token: string, opts: DriveOptions = {}): Promise<Drive> {
  const mountpoint = opts.mountpoint ?? (await tempDir(t, 'mnt'));
  const cacheDir = opts.cacheDir ?? (await tempDir(t, 'cache'));
  const args = ['mount', mountpoint, '--server', opts.serverUrl ?? server.url, '--token', token, '--cache', cacheDir, '--cache-size', opts.cacheSize ?? '4GB'];
  if (opts.device) args.push('--device', opts.device);
  if (opts.drainTimeout !== undefined) args.push('--drain-timeout', String(opts.drainTimeout));
  if (opts.args) args.push(...opts.args);
  const { child, stderr } = await spawnUntil(args, /drive ready at/, undefined, opts.as ?? {});
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

/** The bytes of a file node's head version, straight from the server (none for a file never committed). */
export async function remoteBytes(client: StratusClient, node: NodeInfo): Promise<Buffer> {
  if (node.head_version === 0) return Buffer.alloc(0);
  const manifest = await client.manifest(node.id);
  return Buffer.concat(await Promise.all(manifest.blocks.map((b) => client.getBlock(b.hash))));
}

/**
 * Makes the file `p` (in a folder the server has) with these bytes straight through the API, as
 * another device would: uploaded in 1 MiB blocks and committed as its first version.
 */
export async function remoteWrite(client: StratusClient, p: string, bytes: Buffer): Promise<NodeInfo> {
  const dir = path.posix.dirname(p);
  const parent = await remoteNode(client, dir === '.' ? '' : dir);
  if (parent?.kind !== 'dir') throw new Error(`no folder ${dir} on the server`);
  const node = await client.create({ parent_id: parent.id, name: path.posix.basename(p), kind: 'file' });
  const blocks: BlockRef[] = [];
  for (let at = 0; at < bytes.length; at += 1024 * 1024) {
    const part = bytes.subarray(at, at + 1024 * 1024);
    const hash = blake3Hex(part);
    await client.putBlock(hash, part);
    blocks.push({ hash, size: part.length });
  }
  await client.commit(node.id, { base_version: 0, blocks, size: bytes.length });
  return client.node(node.id);
}

/**
 * The tree under the folder at `p` of the user's tree as the server holds it (head versions,
 * through the API, not a mount), in treeOf's form: what a mount of it would show.
 */
export async function remoteTree(client: StratusClient, p = ''): Promise<Record<string, string>> {
  const top = await remoteNode(client, p);
  if (top?.kind !== 'dir') throw new Error(`no folder ${p || '/'} on the server`);
  const out: Record<string, string> = {};
  const walk = async (id: string, rel: string) => {
    const children = await client.allChildren(id);
    for (const c of children.sort((x, y) => (x.name < y.name ? -1 : 1))) {
      const r = rel ? `${rel}/${c.name}` : c.name;
      if (c.kind === 'dir') {
        out[`${r}/`] = '<dir>';
        await walk(c.id, r);
      } else if (c.kind === 'link') out[r] = treeLink(c.target ?? '');
      else out[r] = treeValue(await remoteBytes(client, c));
    }
  };
  await walk(top.id, '');
  return out;
}

/** Runs a shell command line (bash -c) in `cwd`; rejects with its stderr on failure. */
export async function sh(cmd: string, cwd: string, env: NodeJS.ProcessEnv = {}): Promise<string> {
  const { stdout } = await run('bash', ['-c', cmd], { cwd, env: { ...process.env, ...env }, maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

/**
 * Every path under `dir` (relative, sorted) with type, size, mode, mtime in seconds and, for a
 * symbolic link, its target (a link's own size, mode and time: nothing is followed); then a
 * sha256 of each file. A folder's size and mtime are left out: sizes differ between file systems,
 * and a folder's mtime moves with the entries made in it on the mount that made them, while only
 * a time set on it (touch, tar, rsync, cp -a) reaches the server for every mount (README, "Times").
 */
export async function snapshot(dir: string): Promise<string> {
  const env = { LC_ALL: 'C', TZ: 'UTC' };
  const list = await sh(`find . -printf '%y %s %m %TY-%Tm-%Td_%TH:%TM:%TS %p %l\\n' | sed -E 's/^d [0-9]+ ([0-7]+) [^ ]+/d - \\1 -/; s/(_[0-9:]+)\\.[0-9]+/\\1/' | sort -k5`, dir, env);
  const sums = await sh(`find . -type f -print0 | sort -z | xargs -0 -r sha256sum`, dir, env);
  return list + sums;
}

/** What `stratus status MOUNTPOINT --json` says about the drive (connected, pending commits and bytes, cursor…). */
export type DriveStatus = MountStatus;

export async function driveStatus(mountpoint: string): Promise<DriveStatus> {
  const { stdout } = await run(process.execPath, [bin, 'status', mountpoint, '--json'], { timeout: 15_000 });
  return JSON.parse(stdout) as DriveStatus;
}

/**
 * Polls `probe` until `ok` holds for what it returns; resolves with that value. A probe that
 * throws counts as "not yet" (e.g. ENOENT while a change is on its way). On timeout the error
 * names the last value seen (or the last error), so a failure says what the drive showed.
 */
export async function eventually<T>(what: string, probe: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 20_000, everyMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: string = 'nothing (no probe finished)';
  for (;;) {
    try {
      const v = await probe();
      if (ok(v)) return v;
      last = JSON.stringify(v, (_k, x: unknown) => (Buffer.isBuffer(x) ? `<${x.length} bytes>` : x));
    } catch (err) {
      last = `error: ${(err as Error).message}`;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last seen: ${last.slice(0, 2000)}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * The tree under `dir` as { relative path: what it holds }: folders as "<dir>", symbolic links as
 * "<link> TARGET" (never followed), files up to 256 bytes as their UTF-8 text, bigger ones as
 * "sha256:HEX SIZE". Every file is read with a fresh open, as a user would. Throws if `dir` does
 * not exist (or something vanishes while walked).
 */
export async function treeOf(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string) => {
    const entries = await fs.readdir(path.join(dir, rel), { withFileTypes: true });
    for (const e of entries.sort((x, y) => (x.name < y.name ? -1 : 1))) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        out[`${r}/`] = '<dir>';
        await walk(r);
      } else if (e.isSymbolicLink()) {
        out[r] = treeLink(await fs.readlink(path.join(dir, r)));
      } else {
        const bytes = await fs.readFile(path.join(dir, r));
        out[r] = bytes.length <= 256 ? bytes.toString('utf8') : `sha256:${createHash('sha256').update(bytes).digest('hex')} ${bytes.length}`;
      }
    }
  };
  await walk('');
  return out;
}

/** The value treeOf shows for a symbolic link to `target`. */
export function treeLink(target: string): string {
  return `<link> ${target}`;
}

/** The value treeOf shows for these bytes. */
export function treeValue(bytes: Buffer | string): string {
  const b = typeof bytes === 'string' ? Buffer.from(bytes) : bytes;
  return b.length <= 256 ? b.toString('utf8') : `sha256:${createHash('sha256').update(b).digest('hex')} ${b.length}`;
}

/** A tree (or any record) as JSON with its keys sorted: equal trees give equal strings whatever order they were built in. */
export function canonical(tree: Record<string, string>): string {
  return JSON.stringify(Object.keys(tree).sort().map((k) => [k, tree[k]]));
}
