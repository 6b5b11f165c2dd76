import { Command, InvalidArgumentError } from 'commander';
import bytes from 'bytes';
import { startMount, type MountOptions, type RunningMount } from '../mount/daemon.js';
import { registerMount, unregisterMount } from '../mount/registry.js';

export const DEFAULT_CACHE_SIZE = '10GB';

export function parseSize(value: string): number {
  const n = bytes.parse(value);
  if (n === null || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`not a size: ${value} (e.g. 512MB, 10GB)`);
  return n;
}

/**
 * Runs a mount in the foreground: SIGINT/SIGTERM drain pending commits (count shown on stderr,
 * up to `drainSeconds`), unmount, then `after` (e.g. stop an embedded server).
 */
export async function runMount(opts: MountOptions, drainSeconds: number, after?: () => Promise<void>): Promise<RunningMount> {
  const say = (msg: string) => process.stderr.write(`stratus: ${msg}\n`);
  const mount = await startMount({ ...opts, log: opts.log ?? say });
  await registerMount(mount.mountpoint);
  say(`drive ready at ${mount.mountpoint} (user ${mount.whoami.user.name}, device ${mount.whoami.device.name})`);
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) {
      say(`${signal} again: leaving now; ${mount.queue.pendingCount} pending commit(s) resume at the next mount`);
      process.exit(1);
    }
    stopping = true;
    let last = -1;
    const { drained } = await mount.stop({
      drainTimeoutMs: drainSeconds * 1000,
      progress: (count, size) => {
        if (count === last) return;
        last = count;
        if (count > 0) say(`${signal}: waiting for ${count} pending commit(s), ${size} bytes`);
      },
    });
    if (!drained) say(`${mount.queue.pendingCount} commit(s) still pending after ${drainSeconds} s; they resume at the next mount`);
    await unregisterMount(mount.mountpoint);
    say(`unmounted ${mount.mountpoint}`);
    await after?.();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT').catch(fatal));
  process.once('SIGTERM', () => void stop('SIGTERM').catch(fatal));
  return mount;
}

function fatal(err: unknown): never {
  process.stderr.write(`stratus: ${(err as Error).message}\n`);
  process.exit(1);
}

export function mountCommand(): Command {
  return new Command('mount')
    .description('mount your Stratus drive at MOUNTPOINT (foreground; Ctrl-C commits what is pending and unmounts)')
    .argument('<mountpoint>', 'an empty folder')
    .requiredOption('--server <url>', 'server URL, e.g. http://127.0.0.1:7420')
    .option('--token <token>', 'device token (default: $STRATUS_TOKEN)')
    .option('--cache <dir>', 'cache folder (blocks, pending commits, tree); default: ~/.cache/stratus/SERVER_USER')
    .option('--cache-size <size>', 'bound of the block cache on disk', parseSize, parseSize(DEFAULT_CACHE_SIZE))
    .option('--device <name>', 'name shown in conflicted copies (default: the token\'s device name)')
    .option('--drain-timeout <seconds>', 'how long to wait for pending commits at exit', (v) => Number(v), 60)
    .action(async (mountpoint: string, opts: { server: string; token?: string; cache?: string; cacheSize: number; device?: string; drainTimeout: number }) => {
      const token = opts.token ?? process.env.STRATUS_TOKEN;
      if (!token) throw new Error('no token: give --token or set STRATUS_TOKEN (see `stratus user add`)');
      await runMount({ mountpoint, server: opts.server, token, cacheDir: opts.cache, cacheSize: opts.cacheSize, device: opts.device }, opts.drainTimeout);
    });
}
