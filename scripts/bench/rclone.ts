import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { canonicalMountpoint, mountsAt, unmountIfMounted } from '../../mount/fuse/stale.js';
import { pollUntil } from './helpers.js';
import { spawnUntil, terminate } from './serve-process.js';

/**
 * rclone mount, the baseline the tree group measures in the same run: `rclone serve webdav` of a
 * local folder on loopback (the "server"), and `rclone mount --vfs-cache-mode full` of it, each
 * its own process, with rclone's defaults otherwise: uploads start 5 s after a file's last use
 * (`--vfs-write-back 5s`; with 0s, rclone 1.60 breaks `git clone`: renaming a file while it
 * uploads leaves its old name behind, and git's next config.lock "exists"). rclone's remote
 * control is on so the bench can ask for the VFS upload queue.
 */

const run = promisify(execFile);
const REMOTE = 'benchdav';

export interface RcloneMount {
  mountpoint: string;
  /** The folder the webdav server serves: what the "server" holds. */
  served: string;
  /** Files uploading or waiting to in rclone's VFS cache. */
  pendingUploads(): Promise<number>;
  /** Bytes rclone has transferred so far (uploads and downloads). */
  transferredBytes(): Promise<number>;
  stderr(): string;
  /** Unmounts (`fusermount -uz`), then stops the mount and the webdav server. */
  stop(): Promise<void>;
}

/** rclone's version line; installs Debian's rclone (as root) when there is none. */
export async function ensureRclone(log: (msg: string) => void): Promise<string> {
  const version = async () => (await run('rclone', ['version'])).stdout.split('\n')[0]!;
  try {
    return await version();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (process.getuid?.() !== 0) throw new Error('rclone is not installed (apt-get install rclone), and the bench is not root to install it');
  log('rclone is not installed: apt-get install -y rclone');
  const install = () => run('apt-get', ['install', '-y', '-q', 'rclone'], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  await install().catch(async () => {
    await run('apt-get', ['update', '-q']);
    await install();
  });
  return version();
}

/**
 * Serves `served` over webdav on loopback and mounts it at `<work>/rclone-mnt`, cache in
 * `<work>/rclone-cache` (kept: a second mount on the same `work` starts with the blocks cached).
 * `mountArgs`: more flags of `rclone mount` (e.g. `--vfs-write-back 0s`).
 */
export async function startRclone(work: string, served: string, mountArgs: string[] = []): Promise<RcloneMount> {
  const mountpoint = path.join(work, 'rclone-mnt');
  const cacheDir = path.join(work, 'rclone-cache');
  const config = path.join(work, 'rclone.conf');
  await Promise.all([fs.mkdir(mountpoint, { recursive: true }), fs.mkdir(cacheDir, { recursive: true }), fs.writeFile(config, '')]);
  const serve = await spawnUntil('rclone', ['serve', 'webdav', served, '--addr', '127.0.0.1:0', '--config', config], /started on \[?(http:\/\/[0-9.:]+)/, {
    name: 'rclone serve webdav',
  });
  const env = { ...process.env, [`RCLONE_CONFIG_${REMOTE.toUpperCase()}_TYPE`]: 'webdav', [`RCLONE_CONFIG_${REMOTE.toUpperCase()}_URL`]: `${serve.match[1]}/`, [`RCLONE_CONFIG_${REMOTE.toUpperCase()}_VENDOR`]: 'other' };
  const args = ['mount', `${REMOTE}:`, mountpoint, '--config', config, '--vfs-cache-mode', 'full', '--cache-dir', cacheDir, ...mountArgs];
  let mount: Awaited<ReturnType<typeof spawnUntil>> | undefined;
  const stop = async () => {
    await unmountIfMounted(mountpoint).catch(() => undefined);
    if (mount) await terminate(mount.child);
    await terminate(serve.child);
  };
  try {
    mount = await spawnUntil('rclone', [...args, '--rc', '--rc-addr', '127.0.0.1:0', '--rc-no-auth'], /Serving remote control on (http:\/\/[0-9.:]+)/, { name: 'rclone mount', env });
    const m = mount;
    const canonical = await canonicalMountpoint(mountpoint);
    await pollUntil(async () => ((await mountsAt(canonical)).length > 0 ? true : m.child.exitCode !== null ? false : undefined), {
      timeoutMs: 30_000,
      everyMs: 20,
      what: `rclone to mount ${mountpoint}`,
      why: m.stderr,
    }).then((up) => {
      if (!up) throw new Error(`rclone mount exited: ${m.stderr()}`);
    });
    const rc = async (method: string) => {
      const res = await fetch(`${m.match[1]}/${method}`, { method: 'POST' });
      if (!res.ok) throw new Error(`rclone rc ${method}: HTTP ${res.status} ${await res.text()}`);
      return (await res.json()) as Record<string, unknown>;
    };
    return {
      mountpoint,
      served,
      pendingUploads: async () => {
        const { diskCache } = (await rc('vfs/stats')) as { diskCache: { uploadsInProgress: number; uploadsQueued: number } };
        return diskCache.uploadsInProgress + diskCache.uploadsQueued;
      },
      transferredBytes: async () => (await rc('core/stats')).bytes as number,
      stderr: () => `${serve.stderr()}${m.stderr()}`,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
