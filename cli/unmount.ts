import { Command } from 'commander';
import { unmount } from '../mount/fuse/stale.js';
import { mountOwner } from '../mount/registry.js';

/** Resolves when process `pid` has exited (checked every 100 ms), false after `timeoutMs`. */
async function exited(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0);
    } catch {
      return true;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

export function unmountCommand(): Command {
  return new Command('unmount')
    .description('stop the drive at MOUNTPOINT: its stratus process commits what is pending, then unmounts')
    .argument('<mountpoint>', 'where the drive is mounted')
    .option('--timeout <seconds>', 'how long to wait for the drive to finish', (v) => Number(v), 120)
    .action(async (mountpoint: string, opts: { timeout: number }) => {
      const pid = await mountOwner(mountpoint);
      if (pid === undefined) {
        // No live owner: a dead mount left by a crash, or someone else's FUSE mount.
        await unmount(mountpoint);
        process.stderr.write(`stratus: unmounted ${mountpoint}\n`);
        return;
      }
      process.kill(pid, 'SIGTERM');
      if (!(await exited(pid, opts.timeout * 1000))) throw new Error(`the drive at ${mountpoint} (pid ${pid}) is still finishing after ${opts.timeout} s`);
      process.stderr.write(`stratus: unmounted ${mountpoint}\n`);
    });
}
