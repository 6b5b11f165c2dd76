import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { homedir, hostname, userInfo } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { openDatabase } from '../backend/db/connect.js';
import { addDevice, createUser } from '../backend/services/accounts.js';
import { ApiError } from '../protocol/errors.js';
import { DEFAULT_CACHE_SIZE, parseSize, runMount } from './mount.js';

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
  await mkdir(dataDir, { recursive: true });
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

/** Starts `stratus serve` as a child process and resolves with its URL once it serves. */
function startServerProcess(dataDir: string, listen: string): Promise<{ url: string; child: ChildProcess }> {
  const main = fileURLToPath(new URL('./main.js', import.meta.url));
  const child = spawn(process.execPath, [main, 'serve', '--data', dataDir, '--listen', listen], { stdio: ['ignore', 'inherit', 'pipe'] });
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stderr! });
    let ready = false;
    lines.on('line', (line) => {
      process.stderr.write(`${line}\n`);
      const m = /serving on (\S+)/.exec(line);
      if (m && !ready) {
        ready = true;
        resolve({ url: m[1]!, child });
      }
    });
    child.once('exit', (code) => {
      if (!ready) reject(new Error(`the embedded server exited (code ${code}) before serving`));
      else process.stderr.write(`stratus: the embedded server exited (code ${code})\n`);
    });
  });
}

export function upCommand(): Command {
  return new Command('up')
    .description('one command for a working drive: embedded server + a local user + the mount (default ~/Stratus)')
    .argument('[mountpoint]', 'where the drive appears', path.join(homedir(), 'Stratus'))
    .option('--data <dir>', 'data folder of the embedded server', './stratus-data')
    .option('--listen <host:port>', 'address of the embedded server', '127.0.0.1:7420')
    .option('--cache <dir>', 'cache folder of the mount (default: ~/.cache/stratus/SERVER_USER)')
    .option('--cache-size <size>', 'bound of the block cache on disk', parseSize, parseSize(DEFAULT_CACHE_SIZE))
    .action(async (mountpoint: string, opts: { data: string; listen: string; cache?: string; cacheSize: number }) => {
      const dataDir = path.resolve(opts.data);
      await mkdir(mountpoint, { recursive: true });
      const creds = await localCredentials(dataDir);
      const { url, child } = await startServerProcess(dataDir, opts.listen);
      const stopServer = () =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null) return resolve();
          child.once('exit', () => resolve());
          child.kill('SIGTERM');
        });
      try {
        await runMount({ mountpoint, server: url, token: creds.token, cacheDir: opts.cache, cacheSize: opts.cacheSize }, 60, stopServer);
      } catch (err) {
        await stopServer();
        throw err;
      }
    });
}
