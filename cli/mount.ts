import { Command, Option } from 'commander';
import { prometheusContentType } from 'prom-client';
import { startMount, type MountOptions, type RunningMount } from '../mount/daemon.js';
import { serveCredentials } from './credentials.js';
import { createLogger, logSettings, withLogOptions, type LogFormat, type LogLevelName } from './logging.js';
import { parseMetricsAddress, serveMetrics } from './metrics-listener.js';
import { parseSeconds, parseServerUrl, parseSize } from './flag-values.js';
import { pendingText, waitingText, type UnmountProgress, type UnmountResult } from './stop-report.js';

export const DEFAULT_CACHE_SIZE = '10GB';

export { parseSeconds, parseSize } from './flag-values.js';

/**
 * Exit code of a drive that stopped with commits still pending (the server stayed unreachable for
 * the whole drain, or a second Ctrl-C cut it short). They stay queued on disk in the cache folder
 * and go at the next mount. 0 means everything written was committed; 1 is any other failure.
 */
export const EXIT_PENDING = 3;

/** `--allow-other` of `mount` and `up`. */
export const ALLOW_OTHER_HELP =
  'let other users (a file manager, a service) use the drive, with the permissions its files show; as a normal user this needs a line `user_allow_other` in /etc/fuse.conf';

/** The exit codes as `--help` of `mount` and `up` shows them. */
export const EXIT_CODES_HELP = `
Exit codes:
  0  stopped with everything committed
  ${EXIT_PENDING}  stopped with commits still pending (server unreachable for the whole
     --drain-timeout, or Ctrl-C twice: the second one unmounts at once): they
     stay queued in the cache folder and go at the next mount
  1  any other failure (one line on stderr)`;

/** How long the rest of a stop cut short by a second signal may take once the mount is gone. */
const LEAVE_GRACE_MS = 5_000;

function within(ms: number, work: Promise<unknown> | undefined): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise((resolve) => (timer = setTimeout(resolve, ms)));
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}

/**
 * Runs a mount in the foreground: SIGINT/SIGTERM (or `stratus unmount`, over the control socket)
 * drain pending commits (count shown on stderr and streamed to `stratus unmount`, up to
 * `drainSeconds`), unmount, then `after` (e.g. stop an embedded server: it is still needed by the
 * drain). Exits 0 when everything was committed, EXIT_PENDING when commits were left queued.
 * A second signal during the drain cuts it short: it says what stays queued, unmounts (the
 * mountpoint is left clean, never a dead mount) and exits EXIT_PENDING; the queue is on disk
 * for the next mount. A third signal exits at once.
 */
export async function runMount(opts: MountOptions & { metricsAddress?: string }, drainSeconds: number, after?: () => Promise<void>): Promise<RunningMount> {
  const logger = opts.logger;
  const say = (msg: string, level: 'info' | 'warn' = 'info') => (logger ? logger[level](msg) : process.stderr.write(`stratus: ${msg}\n`));
  // The metrics listener first: an address that cannot be served fails before anything is mounted.
  let running: RunningMount | undefined;
  const listener =
    opts.metricsAddress === undefined
      ? undefined
      : await serveMetrics(opts.metricsAddress, { contentType: prometheusContentType, text: async () => (running ? running.metrics.text() : '') });
  const mount = await startMount(opts).catch(async (err: unknown) => {
    await listener?.close();
    throw err;
  });
  running = mount;
  if (listener) say(`drive metrics at ${listener.url}`);
  // For `stratus share PATH …` and the other file commands: they act as this drive's user.
  serveCredentials(mount.control, { mountpoint: mount.mountpoint, server: opts.server, user: mount.whoami.user.name, token: opts.token });
  say(`drive ready at ${mount.mountpoint} (user ${mount.whoami.user.name}, device ${mount.whoami.device.name})`);
  const pending = () => pendingText(mount.sender.pendingCount, mount.sender.pendingBytes);

  const cutShort = new AbortController();
  const watchers = new Set<(p: UnmountProgress) => void>();
  let saidUnmounted = false;
  const unmounted = () => {
    if (!saidUnmounted) say(`unmounted ${mount.mountpoint}`);
    saidUnmounted = true;
  };
  let stopped: Promise<UnmountResult> | undefined;
  /** Drains (until done, the drain timeout or a second signal) and unmounts, once. */
  const stop = (why: string): Promise<UnmountResult> =>
    (stopped ??= (async () => {
      let last = -1;
      const { drained } = await mount.stop({
        drainTimeoutMs: drainSeconds * 1000,
        abort: cutShort.signal,
        progress: (count, size) => {
          for (const w of watchers) w({ pending: count, bytes: size });
          if (count === last) return;
          last = count;
          if (count > 0) say(`${why}: ${waitingText(count, size)}`);
        },
      });
      // Counted after the unmount: also what was closed after the drain, as the FUSE mount went.
      const left = mount.sender.pendingCount;
      if (left && !cutShort.signal.aborted) say(`${pending()} still pending${drained ? '' : ` after ${drainSeconds} s`}; they stay queued in ${mount.cacheDir} and go at the next mount`, 'warn');
      unmounted();
      return { left, leftBytes: mount.sender.pendingBytes, drained, cacheDir: mount.cacheDir };
    })());
  let finishing = false;
  const finish = async (why: string) => {
    if (finishing) return;
    finishing = true;
    const { left } = await stop(why);
    await mount.control.close(); // `stratus unmount` gets its answer before the process goes
    await after?.();
    process.exit(left ? EXIT_PENDING : 0);
  };
  /** The second signal: the mountpoint is made clean at once; the rest of the stop gets a few seconds. */
  const leaveNow = async () => {
    cutShort.abort();
    await mount.unmountNow();
    unmounted();
    await within(LEAVE_GRACE_MS, stopped);
    await within(LEAVE_GRACE_MS, after?.());
    process.exit(mount.sender.pendingCount ? EXIT_PENDING : 0);
  };

  mount.control.handle('unmount', async (_args, reply) => {
    const watch = (p: UnmountProgress) => reply.progress(p);
    watchers.add(watch);
    try {
      void finish('stratus unmount').catch(fatal);
      return await stop('stratus unmount');
    } finally {
      watchers.delete(watch);
    }
  });

  let signals = 0;
  const onSignal = (signal: string) => {
    signals++;
    if (signals === 1) return void finish(signal).catch(fatal);
    if (signals === 2) {
      const left = mount.sender.pendingCount;
      say(`${signal} again: leaving now; ${left ? `${pending()} stay queued in ${mount.cacheDir} and go at the next mount` : 'nothing was pending'}`, 'warn');
      return void leaveNow().catch(fatal);
    }
    say(`${signal} a third time: exiting at once`, 'warn');
    process.exit(EXIT_PENDING);
  };
  // `on`, not `once`: a second Ctrl-C must reach onSignal (with no listener left, it would kill silently).
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  return mount;
}

function fatal(err: unknown): never {
  process.stderr.write(`stratus: ${(err as Error).message}\n`);
  process.exit(1);
}

/** --metrics of mount and up. */
export const METRICS_HELP = 'serve the drive\'s Prometheus metrics (cache hits, fetch latency, queue, sender state) at http://HOST:PORT/metrics, no authentication: keep it on loopback (e.g. 127.0.0.1:9464); also on the control socket';

export function mountCommand(): Command {
  const cmd = new Command('mount')
    .description(`mount your Stratus drive at MOUNTPOINT (foreground; Ctrl-C commits what is pending and unmounts; exit code ${EXIT_PENDING} if commits were left pending)`)
    .argument('<mountpoint>', 'an empty folder')
    .requiredOption('--server <url>', 'server URL, e.g. http://127.0.0.1:7420', parseServerUrl)
    .option('--token <token>', 'device token')
    .option('--cache <dir>', 'cache folder (blocks, pending commits, tree); default: ~/.cache/stratus/SERVER_USER')
    .addOption(new Option('--cache-size <size>', 'bound of the block cache on disk').argParser(parseSize).default(parseSize(DEFAULT_CACHE_SIZE), DEFAULT_CACHE_SIZE))
    .option('--device <name>', 'name shown in conflicted copies (default: the token\'s device name)')
    .option('--drain-timeout <seconds>', 'how long to wait for pending commits at exit', parseSeconds, 60)
    .option('--allow-other', ALLOW_OTHER_HELP)
    .option('--metrics <host:port>', METRICS_HELP, parseMetricsAddress);
  return withLogOptions(cmd)
    .addHelpText('after', EXIT_CODES_HELP)
    .action(async (mountpoint: string, opts: { server: string; token?: string; cache?: string; cacheSize: number; device?: string; drainTimeout: number; allowOther?: boolean; metrics?: string; logLevel?: LogLevelName; logFile?: string; logFormat?: LogFormat }) => {
      const token = opts.token ?? process.env.STRATUS_TOKEN;
      if (!token) throw new Error('no token: set STRATUS_TOKEN, or give --token-file FILE or token_file in the config file (see `stratus user add`)');
      const logger = createLogger(logSettings(opts));
      await runMount({ mountpoint, server: opts.server, token, cacheDir: opts.cache, cacheSize: opts.cacheSize, device: opts.device, allowOther: opts.allowOther, logger, metricsAddress: opts.metrics }, opts.drainTimeout);
    });
}
