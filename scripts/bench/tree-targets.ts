import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { readStatus } from '../../mount/control/client.js';
import type { MountStatus } from '../../mount/status.js';
import { StratusClient } from '../../protocol/client.js';
import type { NodeInfo } from '../../protocol/types.js';
import { exists, parallel, pollUntil, runQuiet, uploadFile } from './helpers.js';
import { startRclone } from './rclone.js';
import { addUser, startMount, startServe } from './serve-process.js';

/**
 * Where the tree group's operations run, and how each tool says "the server has it": native disk
 * (`sync`), rclone mount (its VFS upload queue is empty and the folder it serves over webdav holds
 * what is expected), and a Stratus drive (its status record reports no pending commit; the
 * server's tree is then checked through the API).
 */

export type TargetName = 'native' | 'rclone' | 'Stratus';

/** What the server must hold after an operation (paths relative to the target's folder). */
export interface Expect {
  /** A folder whose regular files must be exactly `files` (path below it → size), but for `ignore`d paths. */
  root?: string;
  files?: Map<string, number>;
  ignore?: (rel: string) => boolean;
  /** Paths that must not exist. */
  gone?: string[];
  /** A file of `size` bytes holding `value` at `offset`. */
  byte?: { path: string; size: number; offset: number; value: number };
}

export interface Counters {
  /** Bytes the tool read and hashed (undefined: not known). */
  hashed?: number;
  uploaded?: number;
}

export interface Target {
  name: TargetName;
  /** The folder the operations run in. */
  dir: string;
  /** Resolves with the time (Date.now()) by which the server had everything done up to `returnedAt`. */
  settled(returnedAt: number, expect: Expect): Promise<number>;
  counters(): Promise<Counters>;
  /** tar's failures that are this tool's known limits (rclone: no symbolic links): accepted, counted. */
  tarTolerates(stderr: string): boolean;
  /** What went wrong without stopping the run (the server did not hold what was expected…). */
  problems: string[];
  /** The end of the tool's log, for errors. */
  logTail(): string;
  stop(): Promise<void>;
}

/** How long one operation may take to reach the server. */
const SETTLE_TIMEOUT_MS = 20 * 60_000;
/**
 * The Stratus status file is rewritten within 100 ms of any change of the commit queue: when none
 * was written since the command returned and this much longer has passed, the last one still holds.
 */
const STATUS_QUIET_MS = 1000;

/** Regular files below `dir` (path below it → size); undefined when `dir` does not exist. */
export async function localFiles(dir: string): Promise<{ files: Map<string, number>; links: Set<string> } | undefined> {
  let entries;
  try {
    entries = await fs.readdir(dir, { withFileTypes: true, recursive: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const rel = (e: (typeof entries)[number]) => path.relative(dir, path.join(e.parentPath, e.name));
  const regular = entries.filter((e) => e.isFile());
  const files = new Map<string, number>();
  await parallel(regular.length, 32, async (i) => {
    const e = regular[i]!;
    files.set(rel(e), (await fs.lstat(path.join(e.parentPath, e.name))).size);
  });
  return { files, links: new Set(entries.filter((e) => e.isSymbolicLink()).map(rel)) };
}

/** The first way `actual` (the regular files below the expected root; undefined: no such folder) differs from `expect`. */
function filesDiffer(actual: Map<string, number> | undefined, expect: Expect): string | undefined {
  if (!expect.files) return undefined;
  if (!actual) return `${expect.root} is missing`;
  const ignored = expect.ignore ?? (() => false);
  for (const [rel, size] of expect.files) {
    if (ignored(rel)) continue;
    const got = actual.get(rel);
    if (got !== size) return `${expect.root}/${rel}: ${got === undefined ? 'missing' : `${got} bytes`}, expected ${size}`;
  }
  for (const rel of actual.keys()) if (!expect.files.has(rel) && !ignored(rel)) return `${expect.root}/${rel} should not be there`;
  return undefined;
}

export async function nativeTarget(dir: string): Promise<Target> {
  await fs.mkdir(dir, { recursive: true });
  return {
    name: 'native',
    dir,
    settled: async () => {
      await runQuiet('sync', []);
      return Date.now();
    },
    counters: async () => ({}),
    tarTolerates: () => false,
    problems: [],
    logTail: () => '',
    stop: async () => undefined,
  };
}

/** rclone mount of a webdav-served `served` folder (which may hold files already). */
export async function rcloneTarget(work: string, served: string): Promise<Target> {
  const r = await startRclone(work, served);
  /** Where what is expected differs from what the webdav server's folder holds; undefined: nowhere. */
  const differs = async (e: Expect): Promise<string | undefined> => {
    for (const p of e.gone ?? []) if (await exists(path.join(served, p))) return `${p} is still there`;
    if (e.byte) {
      const file = path.join(served, e.byte.path);
      const size = (await fs.stat(file).catch(() => undefined))?.size;
      if (size !== e.byte.size) return `${e.byte.path}: ${size ?? 'no'} bytes, expected ${e.byte.size}`;
      if ((await byteAt(file, e.byte.offset)) !== e.byte.value) return `${e.byte.path}: byte ${e.byte.offset} not written yet`;
    }
    return e.files ? filesDiffer((await localFiles(path.join(served, e.root ?? '')))?.files, e) : undefined;
  };
  let last = '';
  return {
    name: 'rclone',
    dir: r.mountpoint,
    settled: (_returnedAt, expect) =>
      pollUntil(
        async () => {
          const pending = await r.pendingUploads();
          last = pending > 0 ? `${pending} uploads pending` : ((await differs(expect)) ?? '');
          return last === '' ? Date.now() : undefined;
        },
        { timeoutMs: SETTLE_TIMEOUT_MS, everyMs: 50, what: 'rclone to upload everything', why: () => last },
      ),
    counters: async () => ({ uploaded: await r.transferredBytes() }),
    // rclone mount 1.60 makes no symbolic links (EIO): tar says so for each and exits 2.
    tarTolerates: (stderr) =>
      stderr
        .split('\n')
        .filter(Boolean)
        .every((l) => /Cannot create symlink|Exiting with failure status due to previous errors/.test(l)),
    problems: [],
    logTail: () => r.stderr().slice(-2000),
    stop: () => r.stop(),
  };
}

/**
 * A Stratus drive: `stratus serve` (SQLite, loopback) and `stratus mount`, each its own process.
 * `upload` files are put on the server through the API before the drive mounts.
 */
export async function stratusTarget(work: string, upload: { local: string; name: string }[]): Promise<Target> {
  const data = path.join(work, 'stratus-server');
  const token = await addUser('bench', ['--data', data]);
  const server = await startServe(['--data', data]);
  const client = new StratusClient({ server: server.url, token, connections: 8 });
  const mountpoint = path.join(work, 'stratus-mnt');
  const stops: (() => Promise<void>)[] = [() => server.stop(), () => client.close()];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
  };
  try {
    const api = { client, root: await client.root(), config: await client.config() };
    for (const u of upload) await uploadFile(api, u.local, u.name);
    await fs.mkdir(mountpoint, { recursive: true });
    const mount = await startMount({ mountpoint, server: server.url, token, cacheDir: path.join(work, 'stratus-cache'), cacheSize: '4GB' });
    stops.push(() => mount.stop());
    let last: MountStatus | undefined;
    const status = async () => {
      const s = await readStatus(mountpoint);
      last = s?.pid === mount.pid ? s : undefined;
      return last;
    };
    const problems: string[] = [];
    const describe = () => (last ? `last status: ${last.pendingCommits} pending at ${last.updatedAt}` : 'no status yet');
    return {
      name: 'Stratus',
      dir: mountpoint,
      settled: async (returnedAt, expect) => {
        const at = await pollUntil(
          async () => {
            const s = await status();
            if (!s || s.pendingCommits > 0) return undefined;
            // Idle since its last queue change (or since before the command returned).
            const idleAt = Math.max(returnedAt, Date.parse(s.pendingChangedAt));
            return Date.parse(s.updatedAt) >= returnedAt || Date.now() > returnedAt + STATUS_QUIET_MS ? idleAt : undefined;
          },
          { timeoutMs: SETTLE_TIMEOUT_MS, everyMs: 20, what: 'the Stratus drive to report no pending commit', why: describe },
        );
        const wrong = await serverDiffers(client, api.root.id, expect);
        if (wrong) problems.push(`after the drive reported no pending commit, the server differed: ${wrong}`);
        return at;
      },
      counters: async () => {
        // A change made on the server makes the drive pull and rewrite its status: fresh counters.
        const asked = Date.now();
        await client.create({ parent_id: api.root.id, name: `status-nudge-${asked}`, kind: 'dir' });
        const s = await pollUntil(async () => ((await status()) && Date.parse(last!.updatedAt) >= asked ? last : undefined), {
          timeoutMs: 30_000,
          everyMs: 20,
          what: 'a fresh status of the Stratus drive',
          why: describe,
        });
        return { hashed: s.hashedBytes, uploaded: s.uploadedBytes };
      },
      tarTolerates: () => false,
      problems,
      logTail: () => mount.stderr().slice(-2000),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Where the server's tree differs from `expect`; undefined: nowhere. */
async function serverDiffers(client: StratusClient, rootId: string, e: Expect): Promise<string | undefined> {
  const lookup = async (rel: string): Promise<NodeInfo | undefined> => {
    let node: NodeInfo | undefined = { id: rootId } as NodeInfo;
    for (const name of rel.split('/').filter(Boolean)) {
      node = (await client.allChildren(node.id)).find((c) => c.name === name);
      if (!node) return undefined;
    }
    return node;
  };
  for (const p of e.gone ?? []) if (await lookup(p)) return `${p} is still there`;
  if (e.byte) {
    const node = await lookup(e.byte.path);
    if (node?.size !== e.byte.size) return `${e.byte.path}: ${node?.size ?? 'no'} bytes, expected ${e.byte.size}`;
    let start = 0;
    for (const b of (await client.manifest(node.id)).blocks) {
      if (e.byte.offset < start + b.size) {
        const got = (await client.getBlock(b.hash))[e.byte.offset - start];
        if (got !== e.byte.value) return `${e.byte.path}: byte ${e.byte.offset} is ${got}, expected ${e.byte.value}`;
        break;
      }
      start += b.size;
    }
  }
  if (!e.files) return undefined;
  const top = await lookup(e.root ?? '');
  if (!top) return filesDiffer(undefined, e);
  const files = new Map<string, number>();
  const walk = async (id: string, prefix: string): Promise<void> => {
    const children = await client.allChildren(id);
    for (const c of children) if (c.kind === 'file') files.set(`${prefix}${c.name}`, c.size);
    const dirs = children.filter((c) => c.kind === 'dir');
    await parallel(dirs.length, 4, (i) => walk(dirs[i]!.id, `${prefix}${dirs[i]!.name}/`));
  };
  await walk(top.id, '');
  return filesDiffer(files, e);
}

/** The byte at `offset` of `file` (undefined past its end). */
export async function byteAt(file: string, offset: number): Promise<number | undefined> {
  for await (const chunk of createReadStream(file, { start: offset, end: offset })) return (chunk as Buffer)[0];
  return undefined;
}
