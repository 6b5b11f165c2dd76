import { Command } from 'commander';
import { startServer } from '../backend/server.js';
import { makePrivateDir } from '../mount/control/private-dir.js';
import { withSettings } from '../backend/settings.js';
import { parseDuration } from './duration.js';
import { parseListenAddress } from './flag-values.js';
import { createLogger, logSettings, withLogOptions, type LogFormat, type LogLevelName } from './logging.js';
import { parseServeMetrics, serveMetrics } from './metrics-listener.js';

export function serveCommand(): Command {
  const cmd = new Command('serve')
    .description('run the backend: metadata in SQLite (default) or PostgreSQL, blocks on local disk')
    .option('--data <dir>', 'data folder: SQLite file and blocks/ live here', './stratus-data')
    .option('--listen <host:port>', 'address to serve on', parseListenAddress, '127.0.0.1:7420')
    .option('--db <url>', 'metadata database: postgres://… (default: SQLite in the data folder)')
    .option('--blocks <url>', 'block store: a folder or gs://BUCKET[/prefix] (default: DATA/blocks)')
    .option('--retention <duration>', 'keep trashed items and versions that are no longer the head this long, then purge them (30m, 12h, 30d; default 30d); the newest version of a live file is kept forever', parseDuration)
    .option('--no-signed-urls', 'serve block bytes through this server even where the block store can sign URLs (GCS): for a bucket the drives cannot reach')
    .option(
      '--metrics <on|off|host:port>',
      'Prometheus metrics (commits, latency, block bytes, dedup, notification lag, connections, database pool): on = GET /metrics on the API address, without a token (no names or paths in them); off; or HOST:PORT = on a listener of their own only (e.g. 127.0.0.1:9464 when the API is public)',
      parseServeMetrics,
      'on',
    )
    .option(
      '--until-stdin-closes',
      'serve until stdin closes, ignoring SIGINT/SIGTERM: how `stratus up` keeps its server until its drive has drained, and takes it along however it ends',
    );
  return withLogOptions(cmd)
    .action(async (opts: { data: string; listen: string; db?: string; blocks?: string; retention?: number; signedUrls: boolean; untilStdinCloses?: boolean; metrics: string; logLevel?: LogLevelName; logFile?: string; logFormat?: LogFormat }) => {
      const log = createLogger(logSettings(opts));
      const settings = withSettings({
        ...(opts.retention !== undefined && { history: { retention_ms: opts.retention } }),
        downloads: { signed_urls: opts.signedUrls },
      });
      // The SQLite file and the blocks: the server's user's only (mode 0700), whatever the umask.
      if (!(opts.db && opts.blocks)) await makePrivateDir(opts.data);
      // A block folder of its own (not gs://): every user's file content, so the same.
      if (opts.blocks && !opts.blocks.startsWith('gs://')) await makePrivateDir(opts.blocks);
      const server = await startServer({ dataDir: opts.data, listen: opts.listen, dbUrl: opts.db, blocksUrl: opts.blocks, settings, log, metricsRoute: opts.metrics === 'on' });
      const metrics = opts.metrics === 'on' || opts.metrics === 'off' ? undefined : await serveMetrics(opts.metrics, server.metrics).catch(async (err: unknown) => {
        await server.close();
        throw err;
      });
      log.info(`serving on ${server.url} (${opts.db ? 'PostgreSQL' : `data in ${opts.data}`})`);
      if (opts.metrics !== 'off') log.info(`metrics at ${metrics?.url ?? `${server.url}/metrics`}`);
      let stopping = false;
      const stop = async (why: string) => {
        if (stopping) return;
        stopping = true;
        log.info(`${why}, shutting down`);
        await metrics?.close();
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
          process.on(signal, () => log.info(`${signal} ignored: this server stops when its stdin closes`));
        }
      } else {
        process.once('SIGINT', () => void stop('SIGINT'));
        process.once('SIGTERM', () => void stop('SIGTERM'));
      }
    });
}
