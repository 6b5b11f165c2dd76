import path from 'node:path';
import { Command } from 'commander';
import { openBlockStore } from '../backend/blockstore/open.js';
import { runHistoryJobs } from '../backend/jobs/history-jobs.js';
import { defaultSettings } from '../backend/settings.js';
import { humanSize } from './display.js';
import { parseDuration } from './duration.js';
import { openServerDatabase } from './server-db.js';

interface GcOptions {
  data: string;
  db?: string;
  blocks?: string;
  retention?: number;
  grace?: number;
}

/**
 * `stratus gc`: retention and block GC once, now, on a server's data (safe while servers run: one
 * runner at a time through the database lease; it says so when another holds it).
 */
export function gcCommand(): Command {
  return new Command('gc')
    .description("purge what retention lets go (trash, old versions) and delete blocks nothing references; prints what it freed. Safe while servers run")
    .option('--data <dir>', 'data folder: SQLite file and blocks/ live here', './stratus-data')
    .option('--db <url>', 'metadata database: postgres://… (default: SQLite in the data folder)')
    .option('--blocks <url>', 'block store: a folder or gs://BUCKET[/prefix] (default: DATA/blocks)')
    .option('--retention <duration>', 'keep trash and old versions this long (30m, 12h, 30d; default 30d)', parseDuration)
    .option('--grace <duration>', 'delete an unreferenced block only once its last upload or check is this old: commits on their way still find it (default 1h)', parseDuration)
    .action(async (opts: GcOptions) => {
      const dataDir = path.resolve(opts.data);
      const db = await openServerDatabase(opts, 'gc');
      const store = await openBlockStore(opts.blocks, dataDir);
      try {
        const settings = {
          ...defaultSettings.history,
          ...(opts.retention !== undefined && { retention_ms: opts.retention }),
          ...(opts.grace !== undefined && { gc_grace_ms: opts.grace }),
        };
        const run = await runHistoryJobs(db, store, settings);
        if (!run) {
          process.stderr.write('stratus gc: another server is running retention and GC right now; nothing done\n');
          process.exitCode = 1;
          return;
        }
        const { purge, gc } = run;
        process.stdout.write(
          `purged ${purge.items} trash item(s) (${purge.nodes} node(s)) and ${purge.versions} version(s)\n` +
            `examined ${gc.examined} unreferenced block(s), deleted ${gc.deleted}, freed ${humanSize(gc.freedBytes)}${gc.failed ? `; ${gc.failed} could not be deleted (tried again next run)` : ''}\n`,
        );
      } finally {
        await store.close();
        await db.destroy();
      }
    });
}

