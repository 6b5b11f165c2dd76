import { mkdir, readdir, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { BlockCache } from '../cache/block-cache.js';
import { StratusClient } from '../protocol/client.js';
import type { ServerConfig, WhoAmI } from '../protocol/types.js';
import { ChunkerPool } from './chunker/pool.js';
import { fuseOps } from './fuse/adapter.js';
import { mountFuse } from './fuse/binding.js';
import { checkMountpoint, cleanStaleMount } from './fuse/stale.js';
import { StateStore } from './state/store.js';
import { catchUp } from './sync/catch-up.js';
import { CommitQueue } from './sync/commit-queue.js';
import { BlockSource } from './vfs/block-source.js';
import { Tree } from './vfs/tree.js';
import { Vfs } from './vfs/vfs.js';

export interface MountOptions {
  mountpoint: string;
  server: string;
  token: string;
  /** Cache folder (blocks, state, staging); default: under the user's cache dir, keyed by server and user. */
  cacheDir?: string;
  /** Hard bound of the block cache in bytes. */
  cacheSize: number;
  /** Name used in conflicted copies; default: the device name the token belongs to. */
  device?: string;
  attrTimeout?: number;
  log?: (msg: string) => void;
}

export interface RunningMount {
  mountpoint: string;
  cacheDir: string;
  whoami: WhoAmI;
  config: ServerConfig;
  vfs: Vfs;
  queue: CommitQueue;
  cache: BlockCache;
  source: BlockSource;
  tree: Tree;
  /** Drains pending commits (up to `drainTimeoutMs`, telling `progress` the count), then unmounts and closes. */
  stop(opts?: { drainTimeoutMs?: number; progress?: (count: number, bytes: number) => void }): Promise<{ drained: boolean }>;
}

/** The default cache folder of DESIGN §9: per server and user, under XDG_CACHE_HOME or ~/.cache. */
export function defaultCacheDir(server: string, user: string): string {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  const url = new URL(server);
  const key = `${url.hostname}_${url.port || (url.protocol === 'https:' ? '443' : '80')}_${user}`.replace(/[^A-Za-z0-9._-]/g, '_');
  return join(base, 'stratus', key);
}

/** Starts the drive: server session, local state, cache, commit queue, then the FUSE mount. */
export async function startMount(opts: MountOptions): Promise<RunningMount> {
  const log = opts.log ?? (() => undefined);
  const mountpoint = resolve(opts.mountpoint);
  await cleanStaleMount(mountpoint);
  await checkMountpoint(mountpoint);

  const client = new StratusClient({ server: opts.server, token: opts.token });
  const closers: (() => Promise<unknown>)[] = [() => client.close()];
  const closeAll = async () => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
  };
  try {
    const [whoami, config] = await Promise.all([client.whoami(), client.config()]);
    const cacheDir = resolve(opts.cacheDir ?? defaultCacheDir(opts.server, whoami.user.name));
    const stagingDir = join(cacheDir, 'staging');
    await mkdir(stagingDir, { recursive: true });

    const store = await StateStore.open(join(cacheDir, 'state'));
    closers.push(() => store.close());
    const identity = `${new URL(opts.server).origin} user ${whoami.user.id}`;
    const known = await store.getMeta('identity');
    if (known !== undefined && known !== identity) {
      throw new Error(`cache folder ${cacheDir} belongs to ${known}, not ${identity}: give another --cache`);
    }
    await store.setMeta('identity', identity);

    const cache = await BlockCache.open({ dir: cacheDir, maxBytes: opts.cacheSize });
    closers.push(() => cache.close());
    const pool = new ChunkerPool();
    closers.push(() => pool.close());
    await pool.warm();
    const tree = new Tree(store, client);
    closers.push(() => tree.flush());
    const cursor = await tree.load();
    if (cursor !== undefined) await catchUp(client, tree, cursor);

    const device = opts.device ?? whoami.device.name;
    const queue = new CommitQueue({ store, client, pool, cache, tree, config, device, log });
    closers.push(() => queue.stop());
    await queue.start();
    await removeOrphanStaging(stagingDir, new Set(queue.list().map((e) => e.staging)));

    const source = new BlockSource(client, cache, pool);
    const vfs = new Vfs({ tree, client, source, cache, queue, stagingDir });
    const fuse = await mountFuse(mountpoint, fuseOps(vfs, log), { attrTimeout: opts.attrTimeout, entryTimeout: opts.attrTimeout });
    log(`mounted ${identity} at ${mountpoint} (cache ${cacheDir})`);

    let stopping: Promise<{ drained: boolean }> | undefined;
    const stop: RunningMount['stop'] = (s = {}) =>
      (stopping ??= (async () => {
        const drained = await queue.drain(s.drainTimeoutMs ?? 60_000, s.progress);
        await fuse.unmount();
        await closeAll();
        return { drained };
      })());
    return { mountpoint, cacheDir, whoami, config, vfs, queue, cache, source, tree, stop };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** Staging files no queue entry owns are leftovers of files open for writing when the mount died. */
async function removeOrphanStaging(dir: string, owned: Set<string>): Promise<void> {
  for (const name of await readdir(dir)) {
    const path = join(dir, name);
    if (!owned.has(path)) await rm(path, { force: true });
  }
}
