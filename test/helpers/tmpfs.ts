import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * A real, small file system (tmpfs, needs root as the FUSE tests do) at a fresh folder, for
 * tests of what happens when a disk fills up: writes past `bytes` fail with ENOSPC. Unmounted and
 * removed in the test's teardown, also when the test fails.
 */
export async function smallDisk(t: { teardown(fn: () => unknown): void }, bytes: number): Promise<{ dir: string; resize(bytes: number): Promise<void> }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-full-'));
  await run('mount', ['-t', 'tmpfs', '-o', `size=${bytes},mode=0700`, 'tmpfs', dir]);
  t.teardown(async () => {
    await run('umount', ['-l', dir]).catch(() => undefined);
    await fs.rm(dir, { recursive: true, force: true });
  });
  return {
    dir,
    async resize(size) {
      await run('mount', ['-o', `remount,size=${size}`, dir]);
    },
  };
}
