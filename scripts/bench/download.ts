import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Agent, request } from 'undici';
import { StratusClient } from '../../protocol/client.js';
import { blake3Hex } from '../../protocol/hash.js';
import { addUser, startServe } from './serve-process.js';

const MiB = 1024 * 1024;
const BLOCK = 4 * MiB;

export interface DownloadOptions {
  /** Bytes downloaded per pass, in 4 MiB blocks. */
  totalMiB: number;
  /** Entries of the folder whose listing is timed. */
  children: number;
  /** Counted passes (after one warm-up); each measures disk, plain HTTP and Stratus one after the other. */
  rounds: number;
  /** GETs in flight (the drive's read-ahead keeps 8). */
  inFlight?: number;
  /**
   * Extra NODE_OPTIONS for the server process only, e.g. ['--import=/tmp/profile-hook.mjs'] with a
   * module that runs an inspector Profiler session (--cpu-prof itself is not allowed in NODE_OPTIONS).
   */
  serverNodeOptions?: string[];
  log?: (msg: string) => void;
}

export interface DownloadResult {
  blocks: number;
  bytes: number;
  inFlight: number;
  children: number;
  /** MiB/s per round. */
  diskMBs: number[];
  plainHttpMBs: number[];
  stratusMBs: number[];
  /** CPU seconds (user + system) the server process spent per GiB served, per round; empty where /proc is not there. */
  plainHttpCpuPerGiB: number[];
  stratusCpuPerGiB: number[];
  /** Median ms per round of one GET /children page holding every entry (limit = children, ≤ 5000). */
  childrenPageMs: number[];
  /** Median ms per round to list the folder in pages of 1000 (the mount's default), all pages. */
  childrenPagedMs: number[];
}

/** One timed pass through a server: seconds, and the server's CPU seconds per GiB (undefined without /proc). */
interface ServerRead {
  seconds: number;
  cpu: number | undefined;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** `n` workers take items off one list until it is empty: `n` operations in flight. */
async function inFlight<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

/**
 * The baseline HTTP server: plain `node:http` streaming the block files with fs.createReadStream
 * (defaults), no auth, no database: the ceiling a Node server reaches on this machine.
 */
const PLAIN_SERVER = `
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
const root = process.argv[1];
const server = http.createServer((req, res) => {
  const hash = req.url.split('/').pop();
  const file = path.join(root, hash.slice(0, 2), hash.slice(2, 4), hash);
  fs.stat(file, (err, st) => {
    if (err) { res.writeHead(404).end(); return; }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': st.size });
    fs.createReadStream(file).pipe(res);
  });
});
server.keepAliveTimeout = 65000;
server.listen(0, '127.0.0.1', () => process.stdout.write('port ' + server.address().port + '\\n'));
`;

async function startPlainServer(blocksDir: string): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', PLAIN_SERVER, blocksDir], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      const m = /port (\d+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`plain HTTP server exited (${code})`)));
  });
  return { url: `http://127.0.0.1:${port}`, child };
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux); undefined elsewhere. */
function cpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return undefined;
  }
}

/** The pid of our child process whose command line contains `needle` (Linux). */
function childPid(needle: string): number | undefined {
  try {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const ppid = readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1]!.split(' ')[1];
        if (ppid === String(process.pid) && readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(needle)) return Number(entry);
      } catch {
        // the process went away meanwhile
      }
    }
  } catch {
    // no /proc
  }
  return undefined;
}

/** Runs `fn` with NODE_OPTIONS extended for the processes it spawns (only). */
async function withNodeOptions<T>(extra: string[] | undefined, fn: () => Promise<T>): Promise<T> {
  if (!extra?.length) return fn();
  const saved = process.env.NODE_OPTIONS;
  process.env.NODE_OPTIONS = [saved, ...extra].filter(Boolean).join(' ');
  try {
    return await fn();
  } finally {
    if (saved === undefined) delete process.env.NODE_OPTIONS;
    else process.env.NODE_OPTIONS = saved;
  }
}

/**
 * Block download and folder listing on loopback, the server in its own process (SQLite):
 * uploads `totalMiB` of random 4 MiB blocks, commits them as one file, then per round reads the
 * block files straight from disk (page cache), through a plain Node HTTP file server, and through
 * GET /v1/blocks/:hash (auth + invariant 4 check + stream), each with `inFlight` reads at once; and
 * times GET /v1/nodes/:id/children over a folder of `children` entries.
 */
export async function benchDownload(workDir: string, opts: DownloadOptions): Promise<DownloadResult> {
  const log = opts.log ?? (() => undefined);
  const n = opts.inFlight ?? 8;
  const count = Math.max(1, Math.ceil(opts.totalMiB / 4));
  const dataDir = path.join(workDir, `download-data-${crypto.randomBytes(3).toString('hex')}`);
  const blocksDir = path.join(dataDir, 'blocks');
  const token = await addUser('bench', ['--data', dataDir]);
  const server = await withNodeOptions(opts.serverNodeOptions, () => startServe(['--data', dataDir]));
  const serverPid = childPid(dataDir);
  const client = new StratusClient({ server: server.url, token, connections: n });
  let plain: { url: string; child: ChildProcess } | undefined;
  const plainAgent = new Agent({ connections: n, keepAliveTimeout: 30_000, bodyTimeout: 0, headersTimeout: 60_000 });
  try {
    log(`download: uploading ${count} blocks of 4 MiB`);
    const refs: Array<{ hash: string; size: number }> = [];
    for (let i = 0; i < count; i++) {
      const bytes = crypto.randomBytes(BLOCK);
      const hash = blake3Hex(bytes);
      await client.putBlock(hash, bytes);
      refs.push({ hash, size: bytes.length });
    }
    const root = await client.root();
    const file = await client.create({ parent_id: root.id, name: 'big.bin', kind: 'file' });
    await client.commit(file.id, { base_version: 0, blocks: refs, size: count * BLOCK });

    log(`download: creating a folder of ${opts.children} entries`);
    const dir = await client.create({ parent_id: root.id, name: 'many', kind: 'dir' });
    const names = Array.from({ length: opts.children }, (_, i) => `file-${String(i).padStart(6, '0')}.txt`);
    await inFlight(names, 8, async (name) => {
      await client.create({ parent_id: dir.id, name, kind: 'file' });
    });
    const pageLimit = Math.min(opts.children, 5000);

    plain = await startPlainServer(blocksDir);
    const plainUrl = plain.url;
    const plainPid = plain.child.pid;
    const hashes = refs.map((r) => r.hash);
    const bytes = count * BLOCK;
    const mbs = (seconds: number) => bytes / MiB / seconds;
    const check = (got: number) => {
      if (got !== BLOCK) throw new Error(`short block: ${got} bytes`);
    };

    const result: DownloadResult = {
      blocks: count,
      bytes,
      inFlight: n,
      children: opts.children,
      diskMBs: [],
      plainHttpMBs: [],
      stratusMBs: [],
      plainHttpCpuPerGiB: [],
      stratusCpuPerGiB: [],
      childrenPageMs: [],
      childrenPagedMs: [],
    };
    /** Server CPU per GiB while `fn` ran, or undefined without /proc. */
    const cpuPerGiB = async (pid: number | undefined, fn: () => Promise<unknown>): Promise<ServerRead> => {
      const before = cpuSeconds(pid);
      const seconds = await timed(fn);
      const after = cpuSeconds(pid);
      return { seconds, cpu: before === undefined || after === undefined ? undefined : (after - before) / (bytes / 1024 / MiB) };
    };
    const readDisk = () =>
      timed(() => inFlight(hashes, n, async (h) => check((await fs.readFile(path.join(blocksDir, h.slice(0, 2), h.slice(2, 4), h))).length)));
    const readPlain = () =>
      cpuPerGiB(plainPid, () =>
        inFlight(hashes, n, async (h) => {
          const res = await request(`${plainUrl}/${h}`, { dispatcher: plainAgent });
          check(Buffer.from(await res.body.arrayBuffer()).length);
        }),
      );
    const readStratus = () => cpuPerGiB(serverPid, () => inFlight(hashes, n, async (h) => check((await client.getBlock(h)).length)));
    // Round 0 is not counted: it warms the connections, the page cache and the JIT. The two
    // servers take turns going first, so neither always runs right after the other.
    for (let round = 0; round <= opts.rounds; round++) {
      const disk = await readDisk();
      let http: ServerRead;
      let stratus: ServerRead;
      if (round % 2) {
        http = await readPlain();
        stratus = await readStratus();
      } else {
        stratus = await readStratus();
        http = await readPlain();
      }
      const pageMs: number[] = [];
      const pagedMs: number[] = [];
      for (let i = 0; i < 5; i++) {
        pageMs.push(
          (await timed(async () => {
            const page = await client.children(dir.id, { limit: pageLimit });
            if (page.children.length !== pageLimit) throw new Error(`listing returned ${page.children.length} entries`);
          })) * 1000,
        );
        pagedMs.push(
          (await timed(async () => {
            const all = await client.allChildren(dir.id, 1000);
            if (all.length !== opts.children) throw new Error(`listing returned ${all.length} entries`);
          })) * 1000,
        );
      }
      if (round === 0) continue;
      result.diskMBs.push(mbs(disk));
      result.plainHttpMBs.push(mbs(http.seconds));
      result.stratusMBs.push(mbs(stratus.seconds));
      if (http.cpu !== undefined) result.plainHttpCpuPerGiB.push(http.cpu);
      if (stratus.cpu !== undefined) result.stratusCpuPerGiB.push(stratus.cpu);
      result.childrenPageMs.push(median(pageMs));
      result.childrenPagedMs.push(median(pagedMs));
      log(`download: round ${round}: disk ${mbs(disk).toFixed(0)}, plain HTTP ${mbs(http.seconds).toFixed(0)}, Stratus ${mbs(stratus.seconds).toFixed(0)} MiB/s; children ${median(pageMs).toFixed(1)} ms/page`);
    }
    return result;
  } finally {
    await client.close();
    await plainAgent.close();
    if (plain) {
      plain.child.kill('SIGTERM');
    }
    await server.stop();
    await fs.rm(dataDir, { recursive: true, force: true });
  }
}
