import { Command, InvalidArgumentError } from 'commander';
import bytes from 'bytes';
import { startMount, type MountOptions, type RunningMount } from '../mount/daemon.js';
import { registerMount, unregisterMount } from '../mount/registry.js';
import { forgetCredentials, keepCredentials } from './credentials.js';

export const DEFAULT_CACHE_SIZE = '10GB';

export function parseSeconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`not a number of seconds: ${value}`);
  return n;
}

export function parseSize(value: string): number {
  const n = bytes.parse(value);
  if (n === null || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`not a size: ${value} (e.g. 512MB, 10GB)`);
  return n;
}

/**
 * Exit code of a drive that stopped with commits still pending (the server stayed unreachable for
 * the whole drain, or a second Ctrl-C cut it short). They stay queued on disk in the cache folder
 * and go at the next mount. 0 means everything written was committed; 1 is any other failure.
 */
export const EXIT_PENDING = 3;

/** The exit codes as `--help` of `mount` and `up` shows them. */
export const EXIT_CODES_HELP = `
Exit codes:
  0  stopped with everything committed
  ${EXIT_PENDING}  stopped with commits still pending (server unreachable for the whole
     --drain-timeout, or Ctrl-C twice): they stay queued in the cache folder and
     go at the next mount
  1  any other failure (one line on stderr)`;

/**
 * Runs a mount in the foreground: SIGINT/SIGTERM drain pending commits (count shown on stderr,
 * up to `drainSeconds`), unmount, then `after` (e.g. stop an embedded server: it is still needed
 * by the drain). Exits 0 when everything was committed, EXIT_PENDING when commits were left
 * queued. A second signal during the drain leaves at once, saying what stays queued.
 */
export async function runMount(opts: MountOptions, drainSeconds: number, after?: () => Promise<void>): Promise<RunningMount> {
  const say = (msg: string) => process.stderr.write(`stratus: ${msg}\n`);
  const mount = await startMount({ ...opts, log: opts.log ?? say });
  await registerMount(mount.mountpoint);
  // For `stratus share PATH …` and the other file commands: they act as this drive's user.
  await keepCredentials({ mountpoint: mount.mountpoint, server: opts.server, user: mount.whoami.user.name, token: opts.token, pid: process.pid }).catch((err: Error) =>
    say(`file commands (stratus share…) on this drive will need --token: ${err.message}`),
  );
  say(`drive ready at ${mount.mountpoint} (user ${mount.whoami.user.name}, device ${mount.whoami.device.name})`);
  const pending = () => `${mount.sender.pendingCount} commit(s), ${mount.sender.pendingBytes} bytes`;
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) {
      const left = mount.sender.pendingCount;
      say(`${signal} again: leaving now; ${left ? `${pending()} stay queued in ${mount.cacheDir} and go at the next mount` : 'nothing was pending'}`);
      process.exit(left ? EXIT_PENDING : 1);
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
    // Counted after the unmount: also what was closed after the drain, as the FUSE mount went.
    const left = mount.sender.pendingCount;
    if (left) say(`${pending()} still pending${drained ? '' : ` after ${drainSeconds} s`}; they stay queued in ${mount.cacheDir} and go at the next mount`);
    await unregisterMount(mount.mountpoint);
    await forgetCredentials(mount.mountpoint).catch(() => undefined);
    say(`unmounted ${mount.mountpoint}`);
    await after?.();
    process.exit(left ? EXIT_PENDING : 0);
  };
  // `on`, not `once`: a second Ctrl-C must reach stop() (with no listener left, it would kill silently).
  process.on('SIGINT', () => void stop('SIGINT').catch(fatal));
  process.on('SIGTERM', () => void stop('SIGTERM').catch(fatal));
  return mount;
}

function fatal(err: unknown): never {
  process.stderr.write(`stratus: ${(err as Error).message}\n`);
  process.exit(1);
}

export function mountCommand(): Command {
  return new Command('mount')
    .description(`mount your Stratus drive at MOUNTPOINT (foreground; Ctrl-C commits what is pending and unmounts; exit code ${EXIT_PENDING} if commits were left pending)`)
    .argument('<mountpoint>', 'an empty folder')
    .requiredOption('--server <url>', 'server URL, e.g. http://127.0.0.1:7420')
    .option('--token <token>', 'device token (default: $STRATUS_TOKEN)')
    .option('--cache <dir>', 'cache folder (blocks, pending commits, tree); default: ~/.cache/stratus/SERVER_USER')
    .option('--cache-size <size>', 'bound of the block cache on disk', parseSize, parseSize(DEFAULT_CACHE_SIZE))
    .option('--device <name>', 'name shown in conflicted copies (default: the token\'s device name)')
    .option('--drain-timeout <seconds>', 'how long to wait for pending commits at exit', parseSeconds, 60)
    .addHelpText('after', EXIT_CODES_HELP)
    .action(async (mountpoint: string, opts: { server: string; token?: string; cache?: string; cacheSize: number; device?: string; drainTimeout: number }) => {
      const token = opts.token ?? process.env.STRATUS_TOKEN;
      if (!token) throw new Error('no token: give --token or set STRATUS_TOKEN (see `stratus user add`)');
      await runMount({ mountpoint, server: opts.server, token, cacheDir: opts.cache, cacheSize: opts.cacheSize, device: opts.device }, opts.drainTimeout);
    });
}
