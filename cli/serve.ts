import { Command } from 'commander';
import { startServer } from '../backend/server.js';
import { withSettings } from '../backend/settings.js';
import { parseDuration } from './duration.js';

export function serveCommand(): Command {
  return new Command('serve')
    .description('run the backend: metadata in SQLite (default) or PostgreSQL, blocks on local disk')
    .option('--data <dir>', 'data folder: SQLite file and blocks/ live here', './stratus-data')
    .option('--listen <host:port>', 'address to serve on', '127.0.0.1:7420')
    .option('--db <url>', 'metadata database: postgres://… (default: SQLite in the data folder)')
    .option('--blocks <url>', 'block store: a folder or gs://BUCKET[/prefix] (default: DATA/blocks)')
    .option('--retention <duration>', 'keep trashed items and versions that are no longer the head this long, then purge them (30m, 12h, 30d; default 30d); the newest version of a live file is kept forever', parseDuration)
    .option('--no-signed-urls', 'serve block bytes through this server even where the block store can sign URLs (GCS): for a bucket the drives cannot reach')
    .option(
      '--until-stdin-closes',
      'serve until stdin closes, ignoring SIGINT/SIGTERM: how `stratus up` keeps its server until its drive has drained, and takes it along however it ends',
    )
    .action(async (opts: { data: string; listen: string; db?: string; blocks?: string; retention?: number; signedUrls: boolean; untilStdinCloses?: boolean }) => {
      const settings = withSettings({
        ...(opts.retention !== undefined && { history: { retention_ms: opts.retention } }),
        downloads: { signed_urls: opts.signedUrls },
      });
      const server = await startServer({ dataDir: opts.data, listen: opts.listen, dbUrl: opts.db, blocksUrl: opts.blocks, settings });
      process.stderr.write(`stratus: serving on ${server.url} (${opts.db ? 'PostgreSQL' : `data in ${opts.data}`})\n`);
      let stopping = false;
      const stop = async (why: string) => {
        if (stopping) return;
        stopping = true;
        process.stderr.write(`stratus: ${why}, shutting down\n`);
        await server.close();
        process.exit(0);
      };
      if (opts.untilStdinCloses) {
        // Whoever reads our stderr may be gone already (it died): a failed write must not end the shutdown.
        process.stderr.on('error', () => undefined);
        process.stdin.on('error', () => void stop('stdin failed'));
        process.stdin.on('end', () => void stop('stdin closed'));
        process.stdin.on('close', () => void stop('stdin closed'));
        process.stdin.resume();
        for (const signal of ['SIGINT', 'SIGTERM'] as const) {
          process.on(signal, () => process.stderr.write(`stratus: ${signal} ignored: this server stops when its stdin closes\n`));
        }
      } else {
        process.once('SIGINT', () => void stop('SIGINT'));
        process.once('SIGTERM', () => void stop('SIGTERM'));
      }
    });
}
