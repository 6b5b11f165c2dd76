import { Command } from 'commander';
import { askDrive, NoDriveError } from '../mount/control/client.js';
import { unmount } from '../mount/fuse/stale.js';
import { EXIT_PENDING, parseSeconds } from './mount.js';
import { pendingText, waitingText, type UnmountProgress, type UnmountResult } from './stop-report.js';

export function unmountCommand(): Command {
  return new Command('unmount')
    .description('stop your drive at MOUNTPOINT: asked over its control socket, it commits what is pending (progress shown), then unmounts')
    .argument('<mountpoint>', 'where the drive is mounted')
    .option('--timeout <seconds>', 'how long to wait for the drive to finish', parseSeconds, 120)
    .addHelpText(
      'after',
      `
Only your own drives answer (their control sockets are in your runtime folder, mode 0700). A
mountpoint no drive of yours answers at is unmounted with fusermount -u (a dead mount left by a
crash; FUSE lets you unmount only your own mounts).

Exit codes:
  0  unmounted with everything committed
  ${EXIT_PENDING}  unmounted with commits still pending: they stay queued in the drive's cache
     folder and go at its next mount
  1  any other failure (one line on stderr)`,
    )
    .action(async (mountpoint: string, opts: { timeout: number }) => {
      const say = (msg: string) => process.stderr.write(`stratus: ${msg}\n`);
      let last = -1;
      let result: UnmountResult;
      try {
        result = (await askDrive(mountpoint, 'unmount', undefined, {
          timeoutMs: opts.timeout * 1000,
          onProgress: (p) => {
            const { pending, bytes } = p as UnmountProgress;
            if (pending === last) return;
            last = pending;
            if (pending > 0) say(waitingText(pending, bytes));
          },
        })) as UnmountResult;
      } catch (err) {
        if (!(err instanceof NoDriveError)) throw err;
        // No drive of this user answers: a dead mount left by a crash, or a FUSE mount of no drive.
        await unmount(mountpoint);
        say(`unmounted ${mountpoint}`);
        return;
      }
      if (result.left > 0) {
        say(`unmounted ${mountpoint}; ${pendingText(result.left, result.leftBytes)} still pending, queued in ${result.cacheDir} for the next mount`);
        process.exitCode = EXIT_PENDING;
      } else say(`unmounted ${mountpoint}`);
    });
}
