import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { openBlockStore } from '../../backend/blockstore/open.js';
import { openDatabase } from '../../backend/db/connect.js';
import { purgeExpired } from '../../backend/jobs/purge.js';
import { defaultSettings } from '../../backend/settings.js';
import { readStatus } from '../../mount/control/client.js';
import { Backoff } from '../../mount/retry/backoff.js';
import { StratusClient } from '../../protocol/client.js';
import { ApiError } from '../../protocol/errors.js';
import { blake3Hex } from '../../protocol/hash.js';
import { startThrowawayPostgres } from '../test-postgres.js';
import type { GcProcessResult } from './gc-process.js';
import { parallel, pollUntil, runQuiet, seconds, sleep } from './helpers.js';
import { markdownTable, num, pct } from './report.js';
import { addUser, spawnUntil, startMount, startServe, terminate, type MountProcess } from './serve-process.js';
import { makeTree, type MadeTree } from './tree-fixture.js';

/**
 * The `history` group (issue 12): what keeping the past costs.
 *
 * 1. Block GC: a disk block store of `gcBlocks` blocks of which 80 % are garbage (blocks of versions
 *    that retention purged, and blocks uploaded but never committed), all claimed longer ago than
 *    the grace period, on SQLite and on a throwaway PostgreSQL. Rows and block files are written
 *    straight through the backend's modules for speed (the versions through the API, purged by
 *    `purgeExpired`); the GC then runs as production runs it (`runHistoryJobs`: in the server's
 *    process as its scheduled job, and in a process of its own as `stratus gc`; gc-process.ts)
 *    while a few clients keep saving small files. Blocks examined and deleted per second, and the
 *    saves' latency with the GC running against the same saves without it.
 * 2. `.stratus/at/T/`: a tree written to a drive, a time T, some changes; then `find | wc -l` of
 *    `MOUNT/.stratus/at/T/` and of the live `MOUNT/`, cold (a fresh mount) and warm (again).
 */

export interface HistoryBenchOptions {
  /** Blocks in the GC's store (80 % garbage). */
  gcBlocks: number;
  /** Seconds of small saves without the GC (the latency baseline). */
  baselineSeconds: number;
  /** Files and folders of the tree listed through `.stratus/at/T/`. */
  atFiles: number;
  atDirs: number;
  log(msg: string): void;
}

export async function benchHistory(workDir: string, o: HistoryBenchOptions): Promise<string> {
  const work = await fs.mkdtemp(path.join(workDir, 'history-'));
  try {
    return [await benchGc(work, o), await benchAtListing(work, o)].join('\n\n');
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

// --- 1: block GC ----------------------------------------------------------------------------------

const GRACE_MS = defaultSettings.history.gc_grace_ms;
const BLOCK_BYTES = 4096;
/** Blocks per seeded version: up to manifest_free_blocks a manifest's blocks may be of any size. */
const PER_VERSION = defaultSettings.limits.manifest_free_blocks;
/** Share of the store that stays referenced (each kept file: 2 purged versions, then its head). */
const LIVE_SHARE = 0.2;
/** Clients saving small files while the GC runs, each a save every SAVE_EVERY_MS (or back to back when slower). */
const CLIENTS = 4;
const SAVE_EVERY_MS = 100;
const gcProcess = path.join(path.dirname(fileURLToPath(import.meta.url)), 'gc-process.js');

/** Where the GC runs: in the server's process (its scheduled job), or in one of its own next to it (`stratus gc`). */
type GcWhere = 'server' | 'process';
const WHERES: GcWhere[] = ['server', 'process'];
const WHERE_LABEL: Record<GcWhere, string> = { server: 'in the server (its scheduled job)', process: 'own process (`stratus gc`)' };

interface Engine {
  name: string;
  dataDir: string;
  dbUrl?: string;
}

interface SeededStore {
  blocks: number;
  live: number;
  /** Blocks only purged versions named. */
  purged: number;
  /** Blocks uploaded and never committed. */
  never: number;
  seconds: number;
}

/** One small save: check + upload of a new 4 KiB block + commit on the head. Times from Date.now(), durations in ms (retries included). */
interface Save {
  start: number;
  end: number;
  saveMs: number;
  commitMs: number;
  /** Requests of it answered 5xx (then retried, as a drive does). */
  failures: number;
}

interface GcOnEngine {
  engine: string;
  where: GcWhere;
  store: SeededStore;
  run: GcProcessResult;
  baseline: Save[];
  /** Saves that started and ended while the GC ran. */
  during: Save[];
  /** The first 5xx answers' messages, and how many there were in all (also outside the GC's window). */
  errors: string[];
  failures: number;
}

async function benchGc(work: string, o: HistoryBenchOptions): Promise<string> {
  const results: GcOnEngine[] = [];
  const notes: string[] = [];
  for (const where of WHERES) {
    const dataDir = path.join(work, `gc-sqlite-${where}`);
    results.push(await gcOn({ name: 'SQLite', dataDir }, where, o));
    await fs.rm(dataDir, { recursive: true, force: true });
  }
  for (const where of WHERES) {
    let pg: Awaited<ReturnType<typeof startThrowawayPostgres>>;
    try {
      pg = await startThrowawayPostgres();
    } catch (err) {
      notes.push(`PostgreSQL left out: ${(err as Error).message.split('\n')[0]}`);
      break;
    }
    const dataDir = path.join(work, `gc-pg-${where}`);
    try {
      results.push(await gcOn({ name: 'PostgreSQL (fsync off, test cluster)', dataDir, dbUrl: pg.url }, where, o));
    } finally {
      await pg.stop();
      await fs.rm(dataDir, { recursive: true, force: true });
    }
  }
  return renderGc(results, notes, o);
}

async function gcOn(e: Engine, where: GcWhere, o: HistoryBenchOptions): Promise<GcOnEngine> {
  const user = `gc-${crypto.randomBytes(3).toString('hex')}`;
  const token = await addUser(user, e.dbUrl ? ['--db', e.dbUrl] : ['--data', e.dataDir]);
  const server = await startGcServer(e, where);
  const clients = Array.from({ length: CLIENTS }, () => new StratusClient({ server: server.url, token, connections: 4 }));
  try {
    const root = await clients[0]!.root();
    o.log(`history: ${e.name}, GC ${WHERE_LABEL[where]}: a store of ${o.gcBlocks} blocks, 80 % garbage`);
    const store = await seedStore(e, user, clients[0]!, root.id, o.gcBlocks);
    await runQuiet('sync', []);
    const files = await Promise.all(
      clients.map(async (client, i) => ({ client, id: (await client.create({ parent_id: root.id, name: `saves-${i}.bin`, kind: 'file' })).id, head: 0 })),
    );
    const errors: string[] = [];
    o.log(`history: ${e.name}: ${o.baselineSeconds} s of small saves from ${CLIENTS} clients without the GC`);
    const baseline = await keepSaving(files, sleep(o.baselineSeconds * 1000), errors);
    o.log(`history: ${e.name}: the GC ${WHERE_LABEL[where]}, the saves going on`);
    let run: GcProcessResult | undefined;
    const saves = await keepSaving(
      files,
      (async () => {
        await sleep(5 * SAVE_EVERY_MS);
        run = await server.collect();
      })(),
      errors,
    );
    const r = run!;
    const garbage = store.purged + store.never;
    if (r.gc.examined !== garbage || r.gc.deleted !== garbage || r.gc.failed !== 0) {
      throw new Error(`${e.name}: the GC examined ${r.gc.examined} and deleted ${r.gc.deleted} blocks (${r.gc.failed} failed), expected ${garbage}`);
    }
    const during = saves.filter((s) => s.start >= r.startedAt && s.end <= r.endedAt);
    const failures = [...baseline, ...saves].reduce((a, x) => a + x.failures, 0);
    return { engine: e.name, where, store, run: r, baseline, during, errors, failures };
  } finally {
    for (const c of clients) await c.close();
    await server.stop();
  }
}

interface GcServer {
  url: string;
  stop(): Promise<void>;
  /** Runs the GC (where this server's bench wants it) and resolves with what it did. */
  collect(): Promise<GcProcessResult>;
}

/** `stratus serve` on the engine's data, and the GC: its own process next to it, or the server's job (gc-process.js). */
async function startGcServer(e: Engine, where: GcWhere): Promise<GcServer> {
  if (where === 'process') {
    const server = await startServe(['--data', e.dataDir, ...(e.dbUrl ? ['--db', e.dbUrl] : [])]);
    return { ...server, collect: () => runGcProcess(e) };
  }
  const { child, match, stderr } = await spawnUntil(process.execPath, [gcProcess, 'serve', e.dataDir, e.dbUrl ?? ''], /serving on (http:\/\/\S+)/, { name: 'gc-process serve' });
  return {
    url: match[1]!,
    stop: () => terminate(child),
    collect: () => {
      const from = stderr().length;
      child.kill('SIGUSR2');
      return pollUntil(
        async () => {
          const said = stderr().slice(from);
          if (said.includes('gc failed: ')) throw new Error(`the server's GC run ${said.slice(said.indexOf('gc failed: '), 4000)}`);
          const done = /gc done (\{.*\})/.exec(said);
          return done ? (JSON.parse(done[1]!) as GcProcessResult) : undefined;
        },
        { timeoutMs: 60 * 60_000, everyMs: 20, what: "the server's GC run" },
      );
    },
  };
}

/** Runs `gc-process.js gc` on the engine's data; resolves with what it reports once it has exited. */
async function runGcProcess(e: Engine): Promise<GcProcessResult> {
  const { child, stderr } = await spawnUntil(process.execPath, [gcProcess, 'gc', e.dataDir, e.dbUrl ?? ''], /gc started at \d+/, { name: 'gc-process gc', timeoutMs: 120_000 });
  const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
  const done = /gc done (\{.*\})/.exec(stderr());
  if (code !== 0 || !done) throw new Error(`gc-process gc exited with ${code}: ${stderr().slice(-4000)}`);
  return JSON.parse(done[1]!) as GcProcessResult;
}

/**
 * Writes `n` blocks of 4 KiB (files where the disk store keeps them, `blocks` and `block_owners`
 * rows of `user`, claimed before the grace period), commits 20 % of them as the heads of files
 * whose two earlier versions name 40 % (through the API), purges those versions (retention's own
 * `purgeExpired`) and leaves the last 40 % unreferenced: uploaded, never committed.
 */
async function seedStore(e: Engine, user: string, client: StratusClient, rootId: string, n: number): Promise<SeededStore> {
  const started = performance.now();
  const files = Math.max(1, Math.round((n * LIVE_SHARE) / PER_VERSION));
  const live = files * PER_VERSION;
  const purged = 2 * live;
  const never = n - live - purged;
  if (never < 0) throw new Error(`STRATUS_BENCH_GC_BLOCKS: at least ${live + purged} blocks, got ${n}`);
  const db = await openDatabase(e.dbUrl, e.dataDir);
  const store = await openBlockStore(undefined, e.dataDir);
  try {
    const userRow = (await db('users').where({ name: user }).first('id')) as { id: number } | undefined;
    if (!userRow) throw new Error(`no user ${user} in the database`);
    const old = Date.now() - 2 * GRACE_MS;
    const hashes: string[] = [];
    for (let from = 0; from < n; from += 5000) {
      const batch = Array.from({ length: Math.min(5000, n - from) }, () => {
        const bytes = crypto.randomBytes(BLOCK_BYTES);
        return { bytes, hash: blake3Hex(bytes) };
      });
      // The disk store's layout (blockstore/disk.ts): BLOCKS/ab/cd/<hash>; checked with store.has below.
      await parallel(batch.length, 32, async (i) => {
        const { hash, bytes } = batch[i]!;
        const file = path.join(e.dataDir, 'blocks', hash.slice(0, 2), hash.slice(2, 4), hash);
        await fs.mkdir(path.dirname(file), { recursive: true });
        await fs.writeFile(file, bytes);
      });
      await db.batchInsert('blocks', batch.map(({ hash }) => ({ hash, size: BLOCK_BYTES, created_at: old, last_claimed_at: old, state: 'present' })), 500);
      await db.batchInsert('block_owners', batch.map(({ hash }) => ({ user_id: userRow.id, hash, created_at: old })), 500);
      hashes.push(...batch.map((b) => b.hash));
    }
    if (!(await store.has(hashes[0]!))) throw new Error('the seeded block files are not where the disk block store looks for them');
    await parallel(files, 8, async (f) => {
      const node = await client.create({ parent_id: rootId, name: `kept-${f}.bin`, kind: 'file' });
      for (let v = 0; v < 3; v++) {
        const first = (3 * f + v) * PER_VERSION;
        const blocks = hashes.slice(first, first + PER_VERSION).map((hash) => ({ hash, size: BLOCK_BYTES }));
        await client.commit(node.id, { base_version: v, blocks, size: blocks.length * BLOCK_BYTES });
      }
    });
    await sleep(5);
    const purge = await purgeExpired(db, Date.now());
    if (purge.versions !== 2 * files) throw new Error(`retention purged ${purge.versions} versions, expected ${2 * files}`);
    // The commits claimed their blocks just now: the whole store is old again, only the saves to come are new.
    await db('blocks').update({ last_claimed_at: old });
    return { blocks: n, live, purged, never, seconds: (performance.now() - started) / 1000 };
  } finally {
    await store.close();
    await db.destroy();
  }
}

interface SaveFile {
  client: StratusClient;
  id: string;
  head: number;
}

/**
 * Each file's client saves it (see Save) every SAVE_EVERY_MS until `during` settles. A request
 * answered 5xx is sent again after the drive's backoff (mount/sync/sender.ts: 500 ms, doubling,
 * ±25 %), its message kept in `errors` (the first 5); any other failure stops them all.
 */
async function keepSaving(files: SaveFile[], during: Promise<unknown>, errors: string[]): Promise<Save[]> {
  let going = true;
  const saves: Save[] = [];
  const loops = files.map(async (f) => {
    try {
      while (going) {
        let failures = 0;
        const retried = async <T>(what: string, request: () => Promise<T>): Promise<T> => {
          const backoff = new Backoff({ minMs: 500, maxMs: 30_000, jitter: 0.25 });
          for (;;) {
            try {
              return await request();
            } catch (err) {
              if (!(err instanceof ApiError) || err.status < 500) throw err;
              failures++;
              if (errors.length < 5) errors.push(`${what}: ${err.status} ${err.message}`);
              await sleep(backoff.next().delayMs);
            }
          }
        };
        const start = Date.now();
        const t0 = performance.now();
        const bytes = crypto.randomBytes(BLOCK_BYTES);
        const hash = blake3Hex(bytes);
        const { missing } = await retried('check', () => f.client.checkBlocks([hash]));
        if (missing.length > 0) await retried('upload', () => f.client.putBlock(hash, bytes));
        const t1 = performance.now();
        f.head = (await retried('commit', () => f.client.commit(f.id, { base_version: f.head, blocks: [{ hash, size: BLOCK_BYTES }], size: BLOCK_BYTES }))).version;
        const t2 = performance.now();
        saves.push({ start, end: Date.now(), saveMs: t2 - t0, commitMs: t2 - t1, failures });
        const rest = SAVE_EVERY_MS - (performance.now() - t0);
        if (rest > 0 && going) await sleep(rest);
      }
    } finally {
      going = false;
    }
  });
  const settled = await Promise.allSettled([during.finally(() => (going = false)), ...loops]);
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
  return saves;
}

/** The `p`th percentile (nearest rank); undefined when there are none. */
function percentile(xs: number[], p: number): number | undefined {
  return xs.length === 0 ? undefined : pct(xs, p);
}

function ratio(a: number | undefined, b: number | undefined): string {
  return a === undefined || b === undefined || b === 0 ? '—' : num(a / b);
}

function renderGc(results: GcOnEngine[], notes: string[], o: HistoryBenchOptions): string {
  const gcRows = results.map(({ engine, where, store, run }) => {
    const s = (run.endedAt - run.startedAt) / 1000;
    const batches = run.progress.map(([at], i) => at - (i === 0 ? run.startedAt : run.progress[i - 1]![0]));
    return [
      engine,
      WHERE_LABEL[where],
      String(store.blocks),
      `${store.purged} + ${store.never}`,
      num(s),
      num(run.gc.examined / s),
      num(run.gc.deleted / s),
      num(run.deleteSeconds),
      num(batches[0]),
      num(batches.length > 1 ? Math.max(...batches.slice(1)) : undefined),
      num(store.seconds),
    ];
  });
  const latencyRows = results.flatMap(({ engine, where, baseline, during, run }) => {
    const gcS = (run.endedAt - run.startedAt) / 1000;
    const count = (xs: Save[], s: number) => `${xs.length} (${(xs.length / s).toFixed(1)}/s), ${xs.reduce((a, x) => a + x.failures, 0)} 5xx`;
    const row = (what: string, pick: (x: Save) => number) => {
      const [b, d] = [baseline.map(pick), during.map(pick)];
      const [b50, b99, d50, d99] = [percentile(b, 50), percentile(b, 99), percentile(d, 50), percentile(d, 99)];
      return [`${engine}, GC ${WHERE_LABEL[where]}`, what, count(baseline, o.baselineSeconds), num(b50), num(b99), count(during, gcS), num(d50), num(d99), ratio(d50, b50), ratio(d99, b99)];
    };
    return [row('save: check + upload 4 KiB + commit', (x) => x.saveMs), row('… the commit request alone', (x) => x.commitMs)];
  });
  const errors = results.flatMap((r) =>
    r.failures ? [`${r.engine}, GC ${WHERE_LABEL[r.where]}: ${r.failures} requests of the saves answered 5xx in the whole run (the table counts those of saves within the GC's window); the first: ${r.errors.map((x) => `“${x}”`).join('; ')}`] : [],
  );
  return [
    `## History: block GC of a disk block store, small saves from ${CLIENTS} clients going on`,
    markdownTable(
      ['metadata', 'GC runs', 'blocks', 'garbage (purged versions + never committed)', 'GC run (s)', 'examined/s', 'deleted/s', 'of which unlinks (s)', 'first batch, with the purge (ms)', 'slowest later batch (ms)', 'setup (s)'],
      gcRows,
    ),
    '',
    `## History: small saves without and with the GC running (ms; ${CLIENTS} clients, one save each every ${SAVE_EVERY_MS} ms or back to back when slower)`,
    markdownTable(['metadata, GC', 'what', 'without GC: saves', 'p50', 'p99', 'with GC: saves', 'p50', 'p99', 'p50 with ÷ without', 'p99 with ÷ without'], latencyRows),
    '',
    ...[
      `The store: ${BLOCK_BYTES / 1024} KiB blocks as files in the disk block store and rows written straight through the backend's modules, all last claimed ${(2 * GRACE_MS) / 3_600_000} h ago (grace period ${GRACE_MS / 3_600_000} h): ${LIVE_SHARE * 100} % the heads of files (${PER_VERSION} blocks each, committed through the API), ${2 * LIVE_SHARE * 100} % named only by those files' two earlier versions (purged by retention's \`purgeExpired\` before the run), the rest uploaded and never committed. A fresh store (and database) for each row.`,
      "The GC: `runHistoryJobs` (retention, then `collectGarbage`) with the default settings, either in the server's process on its own database handle, as its hourly job runs (started by a signal instead of the timer), or in a process of its own next to `stratus serve`, as `stratus gc` runs (scripts/bench/gc-process.ts). Timed from the start of the run to its end. Examined = unreferenced blocks past the grace period it looked at (batches of 500); unlinks = time in the store's delete(). Every garbage block was deleted and none else (checked).",
      `Without GC: ${o.baselineSeconds} s of saves before the run, on the same store; with GC: the saves that started and ended while it ran. A save: \`check\` of a new random 4 KiB block, its upload, a commit on the file's head (what a drive does per small save); a request answered 5xx is sent again after the drive's backoff (500 ms, doubling), which its time includes.`,
      ...errors,
      ...notes,
    ].map((n) => `- ${n}`),
  ].join('\n');
}

// --- 2: `.stratus/at/T/` --------------------------------------------------------------------------

/** The drive keeps a listing of a time less than this before now only briefly (mount/history/history-source.ts). */
const RECENT_MS = 60_000;
const run = promisify(execFile);

interface Listing {
  cold: number;
  warm: number;
}

async function benchAtListing(work: string, o: HistoryBenchOptions): Promise<string> {
  const data = path.join(work, 'at-server');
  const token = await addUser('bench', ['--data', data]);
  const server = await startServe(['--data', data]);
  const onMount = async <T>(fn: (m: MountProcess) => Promise<T>): Promise<T> => {
    const mountpoint = await fs.mkdtemp(path.join(work, 'mnt-'));
    const cacheDir = await fs.mkdtemp(path.join(work, 'cache-'));
    try {
      const m = await startMount({ mountpoint, server: server.url, token, cacheDir, cacheSize: '4GB' });
      try {
        return await fn(m);
      } catch (err) {
        throw new Error(`${(err as Error).message}\n--- mount stderr ---\n${m.stderr().slice(-4000)}`, { cause: err });
      } finally {
        await m.stop();
      }
    } finally {
      await fs.rmdir(mountpoint).catch(() => undefined);
      await fs.rm(cacheDir, { recursive: true, force: true });
    }
  };
  try {
    o.log(`history: writing a tree of ${o.atFiles} files in ${o.atDirs} folders to a drive`);
    let tree: MadeTree | undefined;
    let writtenS = 0;
    const committedS = await onMount((m) =>
      seconds(async () => {
        writtenS = await seconds(async () => (tree = await makeTree(m.mountpoint, { files: o.atFiles, dirs: o.atDirs, seed: 'stratus-bench-history' })));
        await untilCommitted(m, Date.now());
      }),
    );
    const made = tree!;
    const atT = Date.now();
    const T = new Date(atT).toISOString();
    // find prints the folder itself, then every folder, file and link below it.
    const countAtT = 1 + made.dirs + made.files + made.links;
    await sleep(1000);
    o.log(`history: T = ${T}; changing the tree`);
    const changes = await onMount((m) => changeTree(m));
    const countLive = countAtT - changes.removed + changes.added;

    const rounds: { live: Listing; past: Listing }[] = [];
    for (let round = 0; round < 2; round++) {
      o.log(`history: \`find | wc -l\` of the live tree, fresh mount (round ${round + 1} of 2)`);
      const live = await onMount((m) => coldWarm(m.mountpoint + '/', countLive));
      const wait = atT + RECENT_MS + 1000 - Date.now();
      if (wait > 0) {
        o.log(`history: waiting ${Math.ceil(wait / 1000)} s until T is over ${RECENT_MS / 1000} s old`);
        await sleep(wait);
      }
      o.log(`history: \`find | wc -l\` of .stratus/at/${T}/, fresh mount (round ${round + 1} of 2)`);
      const past = await onMount((m) => coldWarm(path.join(m.mountpoint, '.stratus', 'at', T) + '/', countAtT));
      rounds.push({ live, past });
    }
    const best = (pick: (r: { live: Listing; past: Listing }) => number) => Math.min(...rounds.map(pick));
    const past = { cold: best((r) => r.past.cold), warm: best((r) => r.past.warm) };
    const live = { cold: best((r) => r.live.cold), warm: best((r) => r.live.warm) };
    const rows = [
      ['cold: first `find | wc -l` right after a fresh mount (s)', num(past.cold), num(live.cold), ratio(past.cold, live.cold)],
      ['warm: the same command again (s)', num(past.warm), num(live.warm), ratio(past.warm, live.warm)],
      ['entries listed', String(countAtT), String(countLive), ratio(countAtT, countLive)],
    ];
    return [
      `## History: \`find MOUNT/.stratus/at/T/ | wc -l\` against \`find MOUNT/ | wc -l\`, ${made.files} files + ${made.links} links in ${made.dirs} folders`,
      markdownTable(['what', '`.stratus/at/T/`', 'live tree', 'at ÷ live'], rows),
      '',
      ...[
        `The tree (node_modules-like, tree-fixture.ts) was written through a drive: written in ${num(writtenS)} s, ${num(committedS)} s until the drive reported no pending commit. T (${T}) was taken then; afterwards ${changes.edited} files were rewritten, ${changes.added - 1} added in a new folder, one package folder renamed and one (${changes.removed} entries) removed, through another mount.`,
        `Cold = a fresh \`stratus mount\` (empty cache folder; page cache not dropped), the command run as soon as it is ready: every listing comes from the server (live: GET /v1/nodes/:id/children, past: GET /v1/history). Warm = the same command again on that mount. Best of 2 rounds (live, then past, each on its own mount); T was more than ${RECENT_MS / 1000} s old for every listing of the past (the drive keeps listings of more recent times for 2 s only). The counts were checked.`,
        '`stratus serve` (SQLite) on loopback.',
      ].map((n) => `- ${n}`),
    ].join('\n');
  } finally {
    await server.stop();
  }
}

/** Rewrites 1 % of the files, adds 1 % in a new folder, renames one package folder and removes another; until committed. */
async function changeTree(m: MountProcess): Promise<{ edited: number; added: number; removed: number }> {
  const mnt = m.mountpoint;
  const pkgs = path.join(mnt, 'node_modules');
  const [gone, renamed] = [path.join(pkgs, 'pkg-0000'), path.join(pkgs, 'pkg-0001')];
  const removed = 1 + (await fs.readdir(gone, { recursive: true })).length;
  const entries = await fs.readdir(mnt, { recursive: true, withFileTypes: true });
  const files = entries
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name))
    .filter((f) => !f.startsWith(`${gone}/`) && !f.startsWith(`${renamed}/`))
    .sort();
  const edited = files.filter((_, i) => i % 100 === 50);
  await parallel(edited.length, 16, (i) => fs.writeFile(edited[i]!, crypto.randomBytes(2000)));
  const newFiles = Math.max(1, Math.round(files.length / 100));
  await fs.mkdir(path.join(mnt, 'added'));
  await parallel(newFiles, 16, (i) => fs.writeFile(path.join(mnt, 'added', `new-${i}.txt`), crypto.randomBytes(1000)));
  await fs.rename(renamed, `${renamed}-renamed`);
  await runQuiet('rm', ['-r', gone]);
  await untilCommitted(m, Date.now());
  return { edited: edited.length, added: newFiles + 1, removed };
}

/** `find DIR | wc -l` right away, then again; each timed, each must count `expect` lines. */
async function coldWarm(dir: string, expect: number): Promise<Listing> {
  const timed = async () => {
    let count = 0;
    const s = await seconds(async () => {
      count = Number((await run('sh', ['-c', 'find "$1" | wc -l', 'find', dir])).stdout.trim());
    });
    if (count !== expect) throw new Error(`find ${dir} | wc -l: ${count} lines, expected ${expect}`);
    return s;
  };
  return { cold: await timed(), warm: await timed() };
}

/** Until the drive's status record reports no pending commit, written after `since` (or none for 1 s: nothing was pending). */
async function untilCommitted(m: MountProcess, since: number): Promise<void> {
  await pollUntil(
    async () => {
      const s = await readStatus(m.mountpoint);
      if (s?.pid !== m.pid || s.pendingCommits > 0) return undefined;
      return Date.parse(s.updatedAt) >= since || Date.now() > since + 1000 ? true : undefined;
    },
    { timeoutMs: 20 * 60_000, everyMs: 50, what: 'the drive to report no pending commit' },
  );
}
