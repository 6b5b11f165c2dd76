import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { homedir, hostname, userInfo } from 'node:os';
import path from 'node:path';
import { Command, Option } from 'commander';
import { openDatabase } from '../backend/db/connect.js';
import { addDevice, createUser } from '../backend/services/accounts.js';
import { makePrivateDir } from '../mount/control/private-dir.js';
import { cleanStaleMount } from '../mount/fuse/stale.js';
import { ApiError } from '../protocol/errors.js';
import { startEmbeddedServer } from './embedded-server.js';
import { parseListenAddress } from './flag-values.js';
import { createLogger, logSettings, withLogOptions, type LogFormat, type LogLevelName } from './logging.js';
import { parseMetricsAddress } from './metrics-listener.js';
import { ALLOW_OTHER_HELP, DEFAULT_CACHE_SIZE, EXIT_CODES_HELP, EXIT_PENDING, METRICS_HELP, parseSeconds, parseSize, runMount } from './mount.js';

interface LocalCredentials {
  user: string;
  token: string;
}

/** The local user of an embedded server: created once, its token kept (mode 600) in the data folder. */
async function localCredentials(dataDir: string): Promise<LocalCredentials> {
  const file = path.join(dataDir, 'local-user.json');
  try {
    return JSON.parse(await readFile(file, 'utf8')) as LocalCredentials;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await makePrivateDir(dataDir);
  const name = (userInfo().username || 'me').replace(/[^A-Za-z0-9._@-]/g, '_').replace(/^[^A-Za-z0-9]+/, '') || 'me';
  const device = hostname().replace(/[^\x20-\x7e]/g, '_').slice(0, 64) || 'this computer';
  const db = await openDatabase(undefined, dataDir);
  let created;
  try {
    created = await createUser(db, name, device).catch(async (err: unknown) => {
      if (err instanceof ApiError && err.code === 'exists') return addDevice(db, name, device);
      throw err;
    });
  } finally {
    await db.destroy();
  }
  const creds: LocalCredentials = { user: name, token: created.token };
  await writeFile(file, `${JSON.stringify(creds)}\n`, { mode: 0o600 });
  return creds;
}

export function upCommand(): Command {
  const cmd = new Command('up')
    .description(`one command for a working drive: embedded server + a local user + the mount (default ~/Stratus); Ctrl-C commits what is pending, unmounts, then stops the server (exit code ${EXIT_PENDING} if commits were left pending); a server that dies meanwhile is restarted`)
    .argument('[mountpoint]', 'where the drive appears', path.join(homedir(), 'Stratus'))
    .option('--data <dir>', 'data folder of the embedded server', './stratus-data')
    .option('--listen <host:port>', 'address of the embedded server', parseListenAddress, '127.0.0.1:7420')
    .option('--cache <dir>', 'cache folder of the mount (default: ~/.cache/stratus/SERVER_USER)')
    .addOption(new Option('--cache-size <size>', 'bound of the block cache on disk').argParser(parseSize).default(parseSize(DEFAULT_CACHE_SIZE), DEFAULT_CACHE_SIZE))
    .option('--drain-timeout <seconds>', 'how long to wait for pending commits at exit', parseSeconds, 60)
    .option('--allow-other', ALLOW_OTHER_HELP)
    .option('--metrics <host:port>', METRICS_HELP, parseMetricsAddress);
  return withLogOptions(cmd)
    .addHelpText('after', EXIT_CODES_HELP)
    .action(async (mountpoint: string, opts: { data: string; listen: string; cache?: string; cacheSize: number; drainTimeout: number; allowOther?: boolean; metrics?: string; logLevel?: LogLevelName; logFile?: string; logFormat?: LogFormat }) => {
      // One log for the drive and its embedded server (whose JSON lines are shown as its own).
      const logger = createLogger(logSettings(opts));
      const dataDir = path.resolve(opts.data);
      // A drive that did not finish (killed, Ctrl-C twice) left a dead mount: mkdir would fail on it (ENOTCONN).
      await cleanStaleMount(mountpoint);
      await mkdir(mountpoint, { recursive: true });
      const creds = await localCredentials(dataDir);
      // Restarted if it dies while the drive runs (cli/embedded-server.ts).
      const server = await startEmbeddedServer(dataDir, opts.listen, (msg) => logger.warn(msg), logger);
      try {
        // The server stops only after the drive has drained and unmounted.
        await runMount({ mountpoint, server: server.url, token: creds.token, cacheDir: opts.cache, cacheSize: opts.cacheSize, allowOther: opts.allowOther, logger, metricsAddress: opts.metrics }, opts.drainTimeout, server.stop);
      } catch (err) {
        await server.stop();
        throw err;
      }
    });
}
