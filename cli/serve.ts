import { Command } from 'commander';
import { startServer } from '../backend/server.js';

export function serveCommand(): Command {
  return new Command('serve')
    .description('run the backend: metadata in SQLite (default) or PostgreSQL, blocks on local disk')
    .option('--data <dir>', 'data folder: SQLite file and blocks/ live here', './stratus-data')
    .option('--listen <host:port>', 'address to serve on', '127.0.0.1:7420')
    .option('--db <url>', 'metadata database: postgres://… (default: SQLite in the data folder)')
    .option('--blocks <url>', 'block store: a folder (default: DATA/blocks)')
    .action(async (opts: { data: string; listen: string; db?: string; blocks?: string }) => {
      const server = await startServer({ dataDir: opts.data, listen: opts.listen, dbUrl: opts.db, blocksUrl: opts.blocks });
      process.stderr.write(`stratus: serving on ${server.url} (${opts.db ? 'PostgreSQL' : `data in ${opts.data}`})\n`);
      const stop = async (signal: string) => {
        process.stderr.write(`stratus: ${signal}, shutting down\n`);
        await server.close();
        process.exit(0);
      };
      process.once('SIGINT', () => void stop('SIGINT'));
      process.once('SIGTERM', () => void stop('SIGTERM'));
    });
}
