import { createHash } from 'node:crypto';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { BlockCache } from '../cache/block-cache.js';
import { StratusClient } from '../protocol/client.js';
import { isTransient } from './model/errors.js';
import type { ServerConfig, WhoAmI } from '../protocol/types.js';
import { ChunkerPool } from './chunker/pool.js';
import { fuseOps } from './fuse/adapter.js';
import { mountFuse } from './fuse/binding.js';
import { checkMountpoint, cleanStaleMount } from './fuse/stale.js';
import { StatusPublisher, type MountStatus } from './registry.js';
import { StateStore } from './state/store.js';
import { EventsClient } from './sync/events.js';
import { KernelRefresher } from './sync/kernel-refresh.js';
import { Syncer } from './sync/syncer.js';
import { BlockSource } from './blocks/block-source.js';
import { Tree } from './node/tree.js';
import { OpLog } from './oplog/op-log.js';
import { Sender } from './sync/sender.js';
import { fileSizeLimit } from './vfs/posix.js';
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
  /** Write the status file `stratus status` reads (default true). */
  publishStatus?: boolean;
}

export interface RunningMount {
  mountpoint: string;
  cacheDir: string;
  whoami: WhoAmI;
  config: ServerConfig;
  vfs: Vfs;
  /** The durable operation log, and the sender that drains it to the server. */
  log: OpLog;
  sender: Sender;
  cache: BlockCache;
  source: BlockSource;
  tree: Tree;
  /** The change-hint WebSocket. */
  events: EventsClient;
  /** Keeps the tree current with the change feed. */
  syncer: Syncer;
  /** The server could not be reached at start: the mount runs from its saved tree and catches up later. */
  startedOffline: boolean;
  /** What `stratus status` shows. */
  status(): MountStatus;
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

/** Keys of the state store's meta table that let a mount start without its server. */
const META = { identity: 'identity', whoami: 'whoami', config: 'config', token: 'token_sha256' } as const;

function tokenHash(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/**
 * Starts the drive: server session, local state, cache, operation log and its sender, the FUSE mount, then the
 * change feed (events + syncer). With the server unreachable, a cache folder holding a saved tree
 * (and the session saved by an earlier mount) is enough to start: the drive shows the saved tree
 * and catches up once the server answers.
 */
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
    let session: { whoami: WhoAmI; config: ServerConfig } | undefined;
    let offlineReason = '';
    try {
      const [whoami, config] = await Promise.all([client.whoami(), client.config()]);
      session = { whoami, config };
    } catch (err) {
      if (!isTransient(err)) throw err;
      offlineReason = (err as Error).message;
    }
    const origin = new URL(opts.server).origin;
    const noOffline = (why: string) => new Error(`cannot reach the server at ${origin} (${offlineReason}) and ${why}`);
    let cacheDir: string;
    if (opts.cacheDir !== undefined) cacheDir = resolve(opts.cacheDir);
    else if (session) cacheDir = resolve(defaultCacheDir(opts.server, session.whoami.user.name));
    else {
      const found = await findSavedCacheDir(opts.server, opts.token);
      if (!found) throw noOffline('no cache folder of this token holds a saved drive to start from');
      cacheDir = found;
    }
    if (!session && !(await exists(join(cacheDir, 'state', 'state.db')))) throw noOffline(`the cache folder ${cacheDir} holds no saved drive to start from`);
    const stagingDir = join(cacheDir, 'staging');
    await mkdir(stagingDir, { recursive: true });

    const store = await StateStore.open(join(cacheDir, 'state'));
    closers.push(() => store.close());
    const known = await store.getMeta(META.identity);
    if (session) {
      const identity = `${origin} user ${session.whoami.user.id}`;
      if (known !== undefined && known !== identity && !sameLegacyUser(known, origin, await store.getMeta(META.whoami), session.whoami)) {
        throw new Error(`cache folder ${cacheDir} belongs to ${known}, not ${identity}: give another --cache`);
      }
      await store.setMeta(META.identity, identity);
      // What the next mount needs to start while the server is unreachable.
      await store.setMeta(META.whoami, JSON.stringify(session.whoami));
      await store.setMeta(META.config, JSON.stringify(session.config));
      await store.setMeta(META.token, tokenHash(opts.token));
    } else {
      const [whoami, config, token] = await Promise.all([store.getMeta(META.whoami), store.getMeta(META.config), store.getMeta(META.token)]);
      if (known === undefined || whoami === undefined || config === undefined || token === undefined) {
        throw noOffline(`the cache folder ${cacheDir} holds no saved session to start from`);
      }
      // Offline, the token cannot be checked by the server: it must be the one this cache was set up with.
      if (token !== tokenHash(opts.token)) throw noOffline(`the cache folder ${cacheDir} was set up with another token`);
      const saved = { whoami: JSON.parse(whoami) as WhoAmI, config: JSON.parse(config) as ServerConfig };
      const identity = `${origin} user ${saved.whoami.user.id}`;
      if (known !== identity) throw new Error(`cache folder ${cacheDir} belongs to ${known}, not ${identity}: give another --cache`);
      session = saved;
    }
    const { whoami, config } = session;
    const startedOffline = offlineReason !== '';
    const identity = `${origin} user ${whoami.user.id}`;

    const cache = await BlockCache.open({ dir: cacheDir, maxBytes: opts.cacheSize });
    closers.push(() => cache.close());
    const pool = new ChunkerPool();
    closers.push(() => pool.close());
    await pool.warm();
    const tree = new Tree(store, client);
    tree.onBroken = (err) => log(`${err.message}: restart the drive once the cache folder's disk is writable (what was acknowledged before is safe on disk)`);
    closers.push(() => tree.flush());
    let cursor: string | undefined;
    try {
      cursor = await tree.load();
    } catch (err) {
      if (!isTransient(err)) throw err;
      offlineReason ||= (err as Error).message;
      throw noOffline(`the cache folder ${cacheDir} holds no saved tree to start from`);
    }
    if (cursor === undefined) throw new Error(`cache folder ${cacheDir}: the saved tree has no change cursor`);

    // The log first: the first pull must know which nodes have changes still to send.
    const device = opts.device ?? whoami.device.name;
    const oplog = new OpLog(store, tree);
    await oplog.load((bytes) => cache.reserve(bytes));
    const source = new BlockSource(client, cache, pool, { log });
    const sender = new Sender({ log: oplog, tree, store, client, pool, cache, source, config, device, say: log });
    closers.push(() => sender.stop());
    sender.start();
    await removeOrphanStaging(stagingDir, new Set(oplog.list().flatMap((e) => (e.op.kind === 'content' ? [e.op.staging] : []))));

    const events = new EventsClient({ server: opts.server, token: opts.token, log });
    closers.push(() => events.close());
    const syncer = new Syncer({ client, tree, cursor, hints: events, log });
    closers.push(() => syncer.close());
    // Online, the drive shows current state from its first listing; offline, it catches up later.
    if (!startedOffline) await syncer.pullNow().catch(() => undefined);

    const vfs = new Vfs({ tree, log: oplog, client, source, cache, store, stagingDir, maxFileSize: fileSizeLimit(config) });
    const fuse = await mountFuse(mountpoint, fuseOps(vfs, log), { attrTimeout: opts.attrTimeout, entryTimeout: opts.attrTimeout });
    let mounted = true;
    const unmountOnce = async () => {
      if (!mounted) return;
      mounted = false;
      await fuse.unmount();
    };
    closers.push(unmountOnce);
    log(`mounted ${identity} at ${mountpoint} (cache ${cacheDir})${startedOffline ? `; server unreachable (${offlineReason}), started from the saved tree` : ''}`);

    // Remote changes of files the kernel may hold attributes or pages of: make it take fresh ones.
    const refresher = new KernelRefresher({ mountpoint, tree, skip: (ino) => vfs.hasLocalContent(ino), expect: vfs.expectTouch });
    closers.push(() => refresher.close());
    syncer.on('applied', (_changes, files) => refresher.refresh(files));

    // With no commit pending, this is when the drive became idle (the bench's "until committed").
    let pendingChangedAt = Date.now();
    oplog.on('changed', () => (pendingChangedAt = Date.now()));
    const status = (): MountStatus => ({
      pid: process.pid,
      mountpoint,
      server: origin,
      user: whoami.user.name,
      device,
      connected: syncer.connected,
      online: syncer.online,
      startedOffline,
      pendingCommits: sender.pendingCount,
      pendingBytes: sender.pendingBytes,
      pendingChangedAt: new Date(pendingChangedAt).toISOString(),
      hashedBytes: pool.hashedBytes,
      uploadedBytes: sender.stats.uploadedBytes,
      cursor: syncer.cursor,
      lastSyncAt: syncer.lastSyncAt === undefined ? null : new Date(syncer.lastSyncAt).toISOString(),
      lastError: syncer.lastError ?? null,
      updatedAt: new Date().toISOString(),
    });
    const publisher = opts.publishStatus === false ? undefined : new StatusPublisher(status);
    if (publisher) {
      closers.push(() => publisher.close());
      oplog.on('changed', publisher.changed);
      syncer.on('status', publisher.changed);
      await publisher.writeNow();
    }

    // The server is back: what waits in the log goes now, not after its retry backoff (up to 30 s).
    let wasOnline = syncer.online;
    syncer.on('status', () => {
      if (syncer.online && !wasOnline) sender.retryNow();
      wasOnline = syncer.online;
    });

    syncer.start();
    events.start();

    let stopping: Promise<{ drained: boolean }> | undefined;
    const stop: RunningMount['stop'] = (s = {}) =>
      (stopping ??= (async () => {
        const drained = await sender.drain(s.drainTimeoutMs ?? 60_000, s.progress);
        // No more remote changes or kernel refreshes once unmounting starts.
        await events.close();
        await syncer.close();
        await refresher.close();
        await unmountOnce();
        await closeAll();
        return { drained };
      })());
    return { mountpoint, cacheDir, whoami, config, vfs, log: oplog, sender, cache, source, tree, events, syncer, startedOffline, status, stop };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/**
 * Offline and without --cache, the default cache folder cannot be named (it is keyed by the user
 * name the server tells): the folder of this server whose saved session has this token.
 */
async function findSavedCacheDir(server: string, token: string): Promise<string | undefined> {
  const base = resolve(defaultCacheDir(server, '_'), '..');
  const prefix = `${defaultCacheDir(server, '').split('/').pop()}`;
  let names: string[];
  try {
    names = await readdir(base);
  } catch {
    return undefined;
  }
  const want = tokenHash(token);
  for (const name of names.filter((n) => n.startsWith(prefix))) {
    const dir = join(base, name);
    if (!(await exists(join(dir, 'state', 'state.db')))) continue;
    const store = await StateStore.open(join(dir, 'state')).catch(() => undefined);
    if (!store) continue;
    try {
      if ((await store.getMeta(META.token)) === want) return dir;
    } finally {
      await store.close();
    }
  }
  return undefined;
}

/** Staging files no log entry owns are leftovers of files open for writing when the mount died. */
async function removeOrphanStaging(dir: string, owned: Set<string>): Promise<void> {
  for (const name of await readdir(dir)) {
    const path = join(dir, name);
    if (!owned.has(path)) await rm(path, { force: true });
  }
}

/**
 * Caches set up before servers gave opaque user ids recorded the user's integer id ("ORIGIN user
 * 7"); the server no longer sends it. Such a cache is the same user's when its saved whoami names
 * the same user on the same server (names are unique and never reused); it is then re-recorded
 * under the new id.
 */
function sameLegacyUser(known: string, origin: string, savedWhoami: string | undefined, whoami: WhoAmI): boolean {
  const legacy = known.startsWith(`${origin} user `) && /^\d+$/.test(known.slice(`${origin} user `.length));
  if (!legacy || savedWhoami === undefined) return false;
  return (JSON.parse(savedWhoami) as WhoAmI).user.name === whoami.user.name;
}

