import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startThrowawayPostgres } from '../test-postgres.js';
import { benchCommits } from './commits.js';
import { benchUpload } from './upload.js';

/**
 * `npm run bench`: backend figures, each next to a baseline measured in the same run.
 * STRATUS_BENCH_UPLOAD_MIB (default 512) and STRATUS_BENCH_SECONDS (default 5) size it.
 */
const uploadMiB = Number(process.env.STRATUS_BENCH_UPLOAD_MIB ?? 512);
const seconds = Number(process.env.STRATUS_BENCH_SECONDS ?? 5);

const workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-bench-'));
const pgCluster = await startThrowawayPostgres();
try {
  console.log(`# Stratus backend bench — ${os.cpus().length} cores, node ${process.version}, ${new Date().toISOString()}\n`);

  const up = await benchUpload(workDir, uploadMiB);
  console.log(`## Upload: PUT /v1/blocks, ${up.bytes / 1024 / 1024} MiB in 4 MiB blocks, 4 in flight, loopback`);
  console.log('| what | MB/s | ratio to cp |');
  console.log('| --- | ---: | ---: |');
  console.log(`| cp (page cache) | ${up.cpMBs.toFixed(0)} | 1.00 |`);
  console.log(`| cp + fsync | ${up.cpSyncMBs.toFixed(0)} | ${(up.cpSyncMBs / up.cpMBs).toFixed(2)} |`);
  console.log(`| Stratus upload (BLAKE3-verified, fsynced) | ${up.uploadMBs.toFixed(0)} | ${(up.uploadMBs / up.cpMBs).toFixed(2)} (${(up.uploadMBs / up.cpSyncMBs).toFixed(2)} of cp + fsync) |`);

  console.log(`\n## Small commits (check + upload 4 KiB + commit), ${seconds} s per row`);
  console.log('| metadata | clients | commits | commits/s |');
  console.log('| --- | ---: | ---: | ---: |');
  const sqliteDir = path.join(workDir, 'commits-sqlite');
  for (const r of await benchCommits(['--data', sqliteDir], ['--data', sqliteDir], [1, 16], seconds)) {
    console.log(`| SQLite | ${r.clients} | ${r.commits} | ${r.perSecond.toFixed(0)} |`);
  }
  const admin = new pg.Client({ connectionString: pgCluster.url });
  await admin.connect();
  await admin.query('CREATE DATABASE stratus_bench');
  await admin.end();
  const pgUrl = pgCluster.url.replace(/\/postgres$/, '/stratus_bench');
  const pgDir = path.join(workDir, 'commits-pg');
  for (const r of await benchCommits(['--data', pgDir, '--db', pgUrl], ['--db', pgUrl], [1, 16], seconds)) {
    console.log(`| PostgreSQL (fsync off, test cluster) | ${r.clients} | ${r.commits} | ${r.perSecond.toFixed(0)} |`);
  }
} finally {
  await pgCluster.stop();
  await fs.rm(workDir, { recursive: true, force: true });
}
