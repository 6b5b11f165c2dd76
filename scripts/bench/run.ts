import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startThrowawayPostgres } from '../test-postgres.js';
import { benchChunking } from './chunk.js';
import { benchCommits } from './commits.js';
import { benchDownload, median } from './download.js';
import { benchGcsRead } from './gcs-read.js';
import { benchHistory } from './history.js';
import { benchMount } from './mount.js';
import { markdownTable, num, renderSection } from './report.js';
import { benchScale } from './scale.js';
import { benchSync, renderSync } from './sync.js';
import { benchTreeOps } from './tree-ops.js';
import { benchUpload } from './upload.js';

/**
 * `npm run bench`: figures of the drive and the backend, each next to a baseline measured in the
 * same run (native disk, cp; the tree group also rclone mount). Markdown on stdout, progress on stderr.
 *
 * STRATUS_BENCH_QUICK=1 shrinks every size (a development run of a minute or two);
 * STRATUS_BENCH_ONLY=mount,chunk,upload,download,commits,sync,tree,history,scale,gcs picks groups (default: all). Sizes, each
 * overriding the quick and full defaults (quick in brackets where the tree group has one):
 *   STRATUS_BENCH_MOUNT_GIB (1)  STRATUS_BENCH_TREE_FILES (100000)  STRATUS_BENCH_TREE_DIRS (100)
 *   STRATUS_BENCH_WRITE_MIB (100)  STRATUS_BENCH_EDIT_MIB (256)  STRATUS_BENCH_STREAM_GIB (10)
 *   STRATUS_BENCH_STREAM_CACHE (512MB)  STRATUS_BENCH_CHUNK_MIB (512)
 *   STRATUS_BENCH_UPLOAD_MIB (512)  STRATUS_BENCH_SECONDS (5, per commit row)
 *   STRATUS_BENCH_DOWNLOAD_MIB (512)  STRATUS_BENCH_DOWNLOAD_CHILDREN (5000)  STRATUS_BENCH_DOWNLOAD_ROUNDS (5)
 *   STRATUS_BENCH_SYNC_RUNS (100, 1 KiB saves back to back)  STRATUS_BENCH_SYNC_ISOLATED_RUNS (50)  STRATUS_BENCH_SYNC_GAP_MS (1500)
 *   STRATUS_BENCH_SYNC_BIG_MIB (100)  STRATUS_BENCH_SYNC_BIG_RUNS (3)
 *   STRATUS_BENCH_TAR_FILES (10000 [1000])  STRATUS_BENCH_TAR_DIRS (500 [50])  STRATUS_BENCH_EDIT_GIB (1 [0.0625])
 *   STRATUS_BENCH_GC_BLOCKS (100000 [10000])  STRATUS_BENCH_GC_BASELINE_SECONDS (10 [4])
 *   STRATUS_BENCH_AT_FILES (10000 [1000])  STRATUS_BENCH_AT_DIRS (100 [100])
 *   STRATUS_BENCH_SCALE_CLIENTS (50 [10])  STRATUS_BENCH_SCALE_SECONDS (60 [10])  STRATUS_BENCH_SCALE_DEVICES (1000 [100], 10 per user)
 *   STRATUS_BENCH_SCALE_BURST (1000 [100])  STRATUS_BENCH_SCALE_MEMBERS (1000 [100], of one shared folder)
 *   STRATUS_BENCH_SCALE_SHARE_BURST (100 [50], commits into that folder)
 *   STRATUS_BENCH_GCS_MIB (1024 [128], the file read cold with blocks on the GCS emulator)
 * The tree group needs rclone (Debian's; installed with apt-get when missing and the bench is root).
 */
const quick = process.env.STRATUS_BENCH_QUICK === '1';
function setting(name: string, full: number, quickValue: number): number {
  const raw = process.env[name];
  const value = raw === undefined ? (quick ? quickValue : full) : Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, got ${raw}`);
  return value;
}

const GROUPS = ['mount', 'chunk', 'upload', 'download', 'commits', 'sync', 'tree', 'history', 'scale', 'gcs'] as const;
type Group = (typeof GROUPS)[number];
const only = (process.env.STRATUS_BENCH_ONLY ?? GROUPS.join(',')).split(',').map((g) => g.trim()).filter(Boolean);
for (const g of only) if (!GROUPS.includes(g as Group)) throw new Error(`STRATUS_BENCH_ONLY: unknown group ${g} (groups: ${GROUPS.join(', ')})`);
const wanted = (g: Group) => only.includes(g);

const log = (msg: string) => process.stderr.write(`bench: ${msg}\n`);
const print = (text: string) => console.log(`${text}\n`);

async function mountGroup(workDir: string): Promise<void> {
  const sections = await benchMount(workDir, {
    fileMiB: Math.round(setting('STRATUS_BENCH_MOUNT_GIB', 1, 0.125) * 1024),
    treeFiles: setting('STRATUS_BENCH_TREE_FILES', 100_000, 2_000),
    treeDirs: setting('STRATUS_BENCH_TREE_DIRS', 100, 10),
    writeMiB: setting('STRATUS_BENCH_WRITE_MIB', 100, 32),
    editMiB: setting('STRATUS_BENCH_EDIT_MIB', 256, 32),
    streamMiB: Math.round(setting('STRATUS_BENCH_STREAM_GIB', 10, 1) * 1024),
    streamCacheSize: process.env.STRATUS_BENCH_STREAM_CACHE ?? '512MB',
    log,
  });
  for (const s of sections) print(renderSection(s));
}

async function chunkGroup(): Promise<void> {
  log('chunking');
  const c = await benchChunking({ fileMiB: setting('STRATUS_BENCH_CHUNK_MIB', 512, 64) });
  const rows = [
    ['FastCDC cut alone, in-process, 1 core', num(c.cutMbPerSec)],
    ['chunk + BLAKE3, ChunkerPool with 1 worker, 1 file', num(c.mbPerSec1)],
    [`chunk + BLAKE3, ChunkerPool with ${c.threads} workers, ${c.threads} files at once`, num(c.mbPerSecPool)],
  ];
  print(`## Chunk + hash (FastCDC 256K/1M/4M + BLAKE3), ${c.fileMiB} MiB random file in the page cache, best of 3\n${markdownTable(['what', 'MiB/s'], rows)}`);
}

async function uploadGroup(workDir: string): Promise<void> {
  log('upload');
  const up = await benchUpload(workDir, setting('STRATUS_BENCH_UPLOAD_MIB', 512, 64));
  const rows = [
    ['cp (page cache)', num(up.cpMBs), '1.00'],
    ['cp + fsync', num(up.cpSyncMBs), num(up.cpSyncMBs / up.cpMBs)],
    ['Stratus upload (BLAKE3-verified, fsynced)', num(up.uploadMBs), `${num(up.uploadMBs / up.cpMBs)} (${num(up.uploadMBs / up.cpSyncMBs)} of cp + fsync)`],
  ];
  print(`## Upload: PUT /v1/blocks, ${up.bytes / 1024 / 1024} MiB in 4 MiB blocks, 4 in flight, loopback\n${markdownTable(['what', 'MiB/s', 'ratio to cp'], rows)}`);
}

async function downloadGroup(workDir: string): Promise<void> {
  log('download');
  const d = await benchDownload(workDir, {
    totalMiB: setting('STRATUS_BENCH_DOWNLOAD_MIB', 512, 64),
    children: setting('STRATUS_BENCH_DOWNLOAD_CHILDREN', 5000, 5000),
    rounds: setting('STRATUS_BENCH_DOWNLOAD_ROUNDS', 5, 3),
    log,
  });
  const disk = median(d.diskMBs);
  const spread = (xs: number[]) => `${num(Math.min(...xs))}–${num(Math.max(...xs))}`;
  const cpu = (xs: number[]) => (xs.length ? num(median(xs)) : '—');
  const rows = [
    ['read the block files from disk (page cache)', num(disk), spread(d.diskMBs), '1.00', '—'],
    ['plain node:http file server (createReadStream)', num(median(d.plainHttpMBs)), spread(d.plainHttpMBs), num(median(d.plainHttpMBs) / disk), cpu(d.plainHttpCpuPerGiB)],
    ['Stratus GET /v1/blocks/:hash', num(median(d.stratusMBs)), spread(d.stratusMBs), num(median(d.stratusMBs) / disk), cpu(d.stratusCpuPerGiB)],
  ];
  const list = [
    [`one page of ${Math.min(d.children, 5000)}`, num(median(d.childrenPageMs)), spread(d.childrenPageMs)],
    [`all ${d.children} in pages of 1000`, num(median(d.childrenPagedMs)), spread(d.childrenPagedMs)],
  ];
  print(
    `## Download: GET /v1/blocks, ${d.bytes / 1024 / 1024} MiB in 4 MiB blocks, ${d.inFlight} in flight, loopback; median of ${d.diskMBs.length} interleaved rounds\n` +
      `${markdownTable(['what', 'MiB/s', 'range', 'ratio to disk', 'server CPU s/GiB'], rows)}\n\n` +
      `## Listing: GET /v1/nodes/:id/children of a ${d.children}-entry folder, median ms\n${markdownTable(['what', 'ms', 'range'], list)}`,
  );
}

async function commitsGroup(workDir: string): Promise<void> {
  const seconds = setting('STRATUS_BENCH_SECONDS', 5, 1);
  log('commits (SQLite, then a throwaway PostgreSQL)');
  const rows: string[][] = [];
  const sqliteDir = path.join(workDir, 'commits-sqlite');
  for (const r of await benchCommits(['--data', sqliteDir], ['--data', sqliteDir], [1, 16], seconds)) {
    rows.push(['SQLite', 'per namespace', String(r.users), String(r.clients), String(r.commits), num(r.perSecond)]);
  }
  const pgCluster = await startThrowawayPostgres();
  try {
    const admin = new pg.Client({ connectionString: pgCluster.url });
    await admin.connect();
    await admin.query('CREATE DATABASE stratus_bench');
    await admin.end();
    const pgUrl = pgCluster.url.replace(/\/postgres$/, '/stratus_bench');
    const pgDir = path.join(workDir, 'commits-pg');
    // Before (one advisory lock for every mutation, as the global journal had) and after (a lock per namespace), same run.
    for (const [journal, env] of [['one global lock (before)', { STRATUS_GLOBAL_MUTATION_LOCK: '1' }], ['per namespace', {}]] as const) {
      for (const usersEach of [false, true]) {
        for (const r of await benchCommits(['--data', pgDir, '--db', pgUrl], ['--db', pgUrl], usersEach ? [16] : [1, 16], seconds, { usersEach, env })) {
          rows.push(['PostgreSQL (fsync off, test cluster)', journal, String(r.users), String(r.clients), String(r.commits), num(r.perSecond)]);
        }
      }
    }
  } finally {
    await pgCluster.stop();
  }
  print(`## Small commits (check + upload 4 KiB + commit), ${seconds} s per row\n${markdownTable(['metadata', 'journal lock', 'users', 'clients', 'commits', 'commits/s'], rows)}`);
}

async function syncGroup(workDir: string): Promise<void> {
  for (const across of ['devices', 'share'] as const) {
    const r = await benchSync(workDir, {
      runs: setting('STRATUS_BENCH_SYNC_RUNS', 100, 50),
      isolatedRuns: setting('STRATUS_BENCH_SYNC_ISOLATED_RUNS', 50, 20),
      gapMs: setting('STRATUS_BENCH_SYNC_GAP_MS', 1500, 1500),
      smallBytes: 1024,
      bigMiB: setting('STRATUS_BENCH_SYNC_BIG_MIB', 100, 16),
      bigRuns: setting('STRATUS_BENCH_SYNC_BIG_RUNS', 3, 3),
      across,
      log,
    });
    print(renderSync(r));
  }
}

async function treeGroup(workDir: string): Promise<void> {
  print(
    await benchTreeOps(workDir, {
      files: setting('STRATUS_BENCH_TAR_FILES', 10_000, 1_000),
      dirs: setting('STRATUS_BENCH_TAR_DIRS', 500, 50),
      editBytes: Math.round(setting('STRATUS_BENCH_EDIT_GIB', 1, 1 / 16) * 1024 * 1024 * 1024),
      packages: quick ? ['knex'] : ['knex', 'typescript'],
      log,
    }),
  );
}

async function historyGroup(workDir: string): Promise<void> {
  print(
    await benchHistory(workDir, {
      gcBlocks: setting('STRATUS_BENCH_GC_BLOCKS', 100_000, 10_000),
      baselineSeconds: setting('STRATUS_BENCH_GC_BASELINE_SECONDS', 10, 4),
      atFiles: setting('STRATUS_BENCH_AT_FILES', 10_000, 1_000),
      atDirs: setting('STRATUS_BENCH_AT_DIRS', 100, 100),
      log,
    }),
  );
}

async function scaleGroup(workDir: string): Promise<void> {
  const devices = setting('STRATUS_BENCH_SCALE_DEVICES', 1000, 100);
  await benchScale(workDir, {
    clients: setting('STRATUS_BENCH_SCALE_CLIENTS', 50, 10),
    seconds: setting('STRATUS_BENCH_SCALE_SECONDS', 60, 10),
    devices,
    devicesPerUser: 10,
    singleCommits: Math.ceil(devices / 10),
    burst: setting('STRATUS_BENCH_SCALE_BURST', 1000, 100),
    shareMembers: setting('STRATUS_BENCH_SCALE_MEMBERS', 1000, 100),
    shareBurst: setting('STRATUS_BENCH_SCALE_SHARE_BURST', 100, 50),
    emit: print,
    log,
  });
}

async function gcsGroup(workDir: string): Promise<void> {
  print(renderSection(await benchGcsRead(workDir, { fileMiB: setting('STRATUS_BENCH_GCS_MIB', 1024, 128), log })));
}

const workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-bench-'));
try {
  print(`# Stratus bench — ${os.cpus().length} cores, node ${process.version}, ${new Date().toISOString()}${quick ? ' (quick mode: small sizes)' : ''}`);
  if (wanted('mount')) await mountGroup(workDir);
  if (wanted('chunk')) await chunkGroup();
  if (wanted('upload')) await uploadGroup(workDir);
  if (wanted('download')) await downloadGroup(workDir);
  if (wanted('commits')) await commitsGroup(workDir);
  if (wanted('sync')) await syncGroup(workDir);
  if (wanted('tree')) await treeGroup(workDir);
  if (wanted('history')) await historyGroup(workDir);
  if (wanted('scale')) await scaleGroup(workDir);
  if (wanted('gcs')) await gcsGroup(workDir);
} finally {
  await fs.rm(workDir, { recursive: true, force: true });
}
