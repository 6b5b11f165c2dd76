import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { StratusClient } from '../../protocol/client.js';
import { exists, pollUntil } from './helpers.js';
import { markdownTable, num, pct } from './report.js';
import { addUser, startMount, startServe, stratusBin, type MountProcess } from './serve-process.js';

/**
 * Live sync latency (issue 4): from `close()` of a file written on drive A to its new content
 * readable on drive B (another device of the same user, another `stratus mount` process, same
 * server on loopback). B is watched by this process with fresh opens + reads every ~2 ms, as a
 * user (or a program) on that machine would see it; nothing on B is told about the change.
 *
 * Small files alternate between a new file and an edit (same size) of an existing one; the big
 * file is new each run and counts as arrived when a fresh open on B reads its first and last
 * 64 KiB as written (then the whole file is checked, outside the timing).
 */

const run = promisify(execFile);
const MiB = 1024 * 1024;
const KiB = 1024;

export interface SyncBenchOptions {
  /** Small-file runs one right after the other (the next starts when B has the previous): half new files, half edits. */
  runs: number;
  /** Small-file runs with `gapMs` of quiet before each (an isolated save). */
  isolatedRuns: number;
  gapMs: number;
  smallBytes: number;
  bigMiB: number;
  bigRuns: number;
  /** B is another device of A's user (`devices`), or another user's drive with A's folder shared as editor (`share`). */
  across: 'devices' | 'share';
  log(msg: string): void;
}

/** close → readable on B, ms, per run. */
export interface SmallRuns {
  newFileMs: number[];
  editMs: number[];
}

export interface SyncBenchResult {
  across: 'devices' | 'share';
  backToBack: SmallRuns;
  isolated: SmallRuns;
  gapMs: number;
  bigMs: number[];
  smallBytes: number;
  bigBytes: number;
}

/** Polling interval of B (ms). */
const POLL_MS = 2;

export async function benchSync(workDir: string, o: SyncBenchOptions): Promise<SyncBenchResult> {
  const work = await fs.mkdtemp(path.join(workDir, 'sync-'));
  const data = path.join(work, 'server');
  const tokenA = await addUser('bench', ['--data', data, '--device', 'bench-a']);
  const tokenB =
    o.across === 'share'
      ? await addUser('bench-b', ['--data', data, '--device', 'bench-b'])
      : (await run(process.execPath, [stratusBin, 'user', 'token', 'bench', '--data', data, '--device', 'bench-b'])).stdout.trim().split('\n').at(-1)!;
  const server = await startServe(['--data', data]);
  const mounts: MountProcess[] = [];
  const mount = async (name: string, token: string) => {
    const mountpoint = path.join(work, `mnt-${name}`);
    const cacheDir = path.join(work, `cache-${name}`);
    await fs.mkdir(mountpoint);
    const m = await startMount({ mountpoint, server: server.url, token, cacheDir, cacheSize: '4GB' });
    mounts.push(m);
    return m;
  };
  try {
    const a = await mount('a', tokenA);
    const b = await mount('b', tokenB);
    const onA = (...p: string[]) => path.join(a.mountpoint, 'sync', ...p);
    const onB = (...p: string[]) => path.join(b.mountpoint, 'sync', ...p);
    await fs.mkdir(onA());
    if (o.across === 'share') {
      // A's folder, shared with B's user as editor: it shows at B's root under its name.
      const client = new StratusClient({ server: server.url, token: tokenA });
      try {
        const folder = await pollUntil(async () => (await client.children((await client.root()).id)).children.find((c) => c.name === 'sync'), { timeoutMs: 20_000, everyMs: 20, what: 'the folder on the server' });
        await client.share(folder.id, { user: 'bench-b', role: 'editor' });
      } finally {
        await client.close();
      }
    }
    await waitFor(() => exists(onB()), 20_000, 'the folder to reach B');

    // Warm-up (not counted): the first commit and the first pull pay for connection set-up.
    const edit = 'edit.bin';
    let bytes = crypto.randomBytes(o.smallBytes);
    await writeClose(onA(edit), bytes);
    await arrivedSmall(onB(edit), bytes, 20_000);

    const result: SyncBenchResult = { across: o.across, backToBack: { newFileMs: [], editMs: [] }, isolated: { newFileMs: [], editMs: [] }, bigMs: [], smallBytes: o.smallBytes, bigBytes: o.bigMiB * MiB, gapMs: o.gapMs };
    const smallRuns = async (into: SmallRuns, runs: number, gapMs: number, label: string) => {
      o.log(`sync: ${runs} runs of a ${o.smallBytes} B file (new files and edits alternating), A → B, ${label}`);
      for (let i = 0; i < runs; i++) {
        if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
        const isNew = i % 2 === 0;
        const name = isNew ? `new-${label.replace(/\W+/g, '-')}-${i}.bin` : edit;
        bytes = crypto.randomBytes(o.smallBytes);
        const closed = await writeClose(onA(name), bytes);
        const ms = (await arrivedSmall(onB(name), bytes, 20_000)) - closed;
        (isNew ? into.newFileMs : into.editMs).push(ms);
        if (process.env.STRATUS_BENCH_VERBOSE) o.log(`sync: ${label} run ${i} (${isNew ? 'new' : 'edit'}): ${ms.toFixed(1)} ms`);
      }
    };
    await smallRuns(result.backToBack, o.runs, 0, 'back to back');
    await smallRuns(result.isolated, o.isolatedRuns, o.gapMs, `${o.gapMs} ms apart`);

    o.log(`sync: ${o.bigRuns} runs of a ${o.bigMiB} MiB file, A → B`);
    for (let i = 0; i < o.bigRuns; i++) {
      const name = `big-${i}.bin`;
      const local = path.join(work, 'big.bin');
      await writeRandom(local, o.bigMiB * MiB);
      const head = await readAt(local, 0, 64 * KiB);
      const tail = await readAt(local, o.bigMiB * MiB - 64 * KiB, 64 * KiB);
      await new Promise((r) => setTimeout(r, o.gapMs));
      // Copy in through A (cp-like: read local, write the mount), then time from its close.
      const closed = await copyClose(local, onA(name));
      const arrived = await waitFor(
        async () => {
          const st = await fs.stat(onB(name)).catch(() => undefined);
          if (st?.size !== o.bigMiB * MiB) return false;
          const [h, t] = await Promise.all([readAt(onB(name), 0, 64 * KiB), readAt(onB(name), st.size - 64 * KiB, 64 * KiB)]);
          return h.equals(head) && t.equals(tail);
        },
        120_000,
        `${name} to reach B`,
      );
      result.bigMs.push(arrived - closed);
      const [want, got] = await Promise.all([sha256(local), sha256(onB(name))]);
      if (want !== got) throw new Error(`${name} read on B differs from what was written on A`);
      await fs.rm(onA(name));
      await fs.rm(local);
    }
    return result;
  } catch (err) {
    const tails = mounts.map((m) => `--- ${m.mountpoint} stderr ---\n${m.stderr().slice(-3000)}`).join('\n');
    throw new Error(`${(err as Error).message}\n${tails}`, { cause: err });
  } finally {
    for (const m of mounts) await m.stop();
    await server.stop();
    await fs.rm(work, { recursive: true, force: true });
  }
}

/** The section of the report: one row per kind, percentiles in ms. */
export function renderSync(r: SyncBenchResult): string {
  const row = (what: string, xs: number[], goal = '') =>
    xs.length ? [what, String(xs.length), num(pct(xs, 50)), num(pct(xs, 99)), num(Math.max(...xs)), goal] : [what, '0', '—', '—', '—', goal];
  const small = `${r.smallBytes < 1024 * 1024 ? `${r.smallBytes / 1024} KiB` : `${r.smallBytes / MiB} MiB`}`;
  const goal = 'p50 ≤ 100, p99 ≤ 300';
  const rows = [
    row(`${small}, back to back: new file`, r.backToBack.newFileMs),
    row(`${small}, back to back: edit of an existing file (same size)`, r.backToBack.editMs),
    row(`${small}, back to back: all`, [...r.backToBack.newFileMs, ...r.backToBack.editMs], goal),
    row(`${small}, ${r.gapMs} ms apart: new file`, r.isolated.newFileMs),
    row(`${small}, ${r.gapMs} ms apart: edit of an existing file (same size)`, r.isolated.editMs),
    row(`${small}, ${r.gapMs} ms apart: all`, [...r.isolated.newFileMs, ...r.isolated.editMs], goal),
    [`${r.bigBytes / MiB} MiB, new file (median of ${r.bigMs.length})`, String(r.bigMs.length), num(median(r.bigMs)), '—', num(Math.max(...r.bigMs)), ''],
  ];
  const title =
    r.across === 'share'
      ? '## Sync through a share: `close()` on alice\'s drive → new content readable on bob\'s drive (ms)'
      : '## Sync: `close()` on drive A → new content readable on drive B (ms)';
  const who =
    r.across === 'share'
      ? 'A and B are two `stratus mount` processes of two users; A\'s folder is shared with B\'s user as editor'
      : 'A and B are two `stratus mount` processes (two device tokens of one user)';
  return [
    title,
    markdownTable(['what', 'runs', 'p50', 'p99', 'max', 'goal'], rows),
    '',
    `- \`STRATUS_BENCH_ONLY=sync npm run bench\` (quick: \`STRATUS_BENCH_QUICK=1\`). ${who} on one \`stratus serve\` (SQLite, loopback).`,
    `- Back to back: each save starts as soon as B has the previous one (a save about every latency); ${r.gapMs} ms apart: a quiet gap before each save (isolated saves).`,
    `- B is watched with fresh opens + reads of the path every ${POLL_MS} ms until it reads exactly what A wrote; the big file counts when a fresh open reads its first and last 64 KiB (whole file checked afterwards).`,
    `- The path: A queues at close, chunks, hashes, uploads, commits; the server hints B over WebSocket; B pulls /v1/changes and applies it; the read on B fetches the blocks. The big file's figure includes A's upload of ${r.bigBytes / MiB} MiB.`,
  ].join('\n');
}

function median(xs: number[]): number {
  return pct(xs, 50);
}

const now = () => performance.now();

/** Writes `bytes` to `file` and closes it; resolves with the time close() returned. */
async function writeClose(file: string, bytes: Buffer): Promise<number> {
  const fh = await fs.open(file, 'w');
  try {
    for (let done = 0; done < bytes.length; ) done += (await fh.write(bytes, done, bytes.length - done)).bytesWritten;
  } finally {
    await fh.close();
  }
  return now();
}

/** Copies `from` into `to` in 1 MiB writes; resolves with the time close() returned. */
async function copyClose(from: string, to: string): Promise<number> {
  const src = await fs.open(from, 'r');
  const dst = await fs.open(to, 'w');
  try {
    const buf = Buffer.alloc(MiB);
    for (;;) {
      const { bytesRead } = await src.read(buf, 0, buf.length);
      if (bytesRead === 0) break;
      for (let done = 0; done < bytesRead; ) done += (await dst.write(buf, done, bytesRead - done)).bytesWritten;
    }
  } finally {
    await src.close();
    await dst.close();
  }
  return now();
}

/** Polls `file` on B (fresh open + read every POLL_MS) until it holds exactly `bytes`; resolves with the time it did. */
function arrivedSmall(file: string, bytes: Buffer, timeoutMs: number): Promise<number> {
  return waitFor(async () => (await fs.readFile(file).catch(() => undefined))?.equals(bytes) ?? false, timeoutMs, `${file} to reach B`);
}

function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  return pollUntil(async () => ((await check()) ? now() : undefined), { timeoutMs, everyMs: POLL_MS, what: `${what} (sync bench)` });
}

async function readAt(file: string, position: number, length: number): Promise<Buffer> {
  const fh = await fs.open(file, 'r');
  try {
    const buf = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await fh.read(buf, done, length - done, position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return buf.subarray(0, done);
  } finally {
    await fh.close();
  }
}

async function writeRandom(file: string, size: number): Promise<void> {
  const fh = await fs.open(file, 'w');
  try {
    for (let done = 0; done < size; done += 16 * MiB) await fh.write(crypto.randomBytes(Math.min(16 * MiB, size - done)));
  } finally {
    await fh.close();
  }
}

async function sha256(file: string): Promise<string> {
  const hash = crypto.createHash('sha256');
  const fh = await fs.open(file, 'r');
  try {
    for await (const chunk of fh.createReadStream({ highWaterMark: 4 * MiB })) hash.update(chunk as Buffer);
  } finally {
    await fh.close().catch(() => undefined);
  }
  return hash.digest('hex');
}
