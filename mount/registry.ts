import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * Which process serves which mountpoint, so `stratus unmount MOUNTPOINT` can ask that process to
 * drain its pending commits and unmount (a bare fusermount -u would leave commits behind).
 */
function registryDir(): string {
  return join(process.env.XDG_RUNTIME_DIR || tmpdir(), 'stratus-mounts');
}

function entryFile(mountpoint: string): string {
  return join(registryDir(), `${encodeURIComponent(resolve(mountpoint))}.pid`);
}

export async function registerMount(mountpoint: string): Promise<void> {
  await mkdir(registryDir(), { recursive: true });
  await writeFile(entryFile(mountpoint), `${process.pid}\n`);
}

export async function unregisterMount(mountpoint: string): Promise<void> {
  await rm(entryFile(mountpoint), { force: true });
}

/** The pid of the live process serving `mountpoint`, if any. */
export async function mountOwner(mountpoint: string): Promise<number | undefined> {
  let pid: number;
  try {
    pid = Number((await readFile(entryFile(mountpoint), 'utf8')).trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}
