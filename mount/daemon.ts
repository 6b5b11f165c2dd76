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
import { makePrivateDir } from './control/private-dir.js';
import { ControlServer } from './control/server.js';
import type { MountStatus } from './status.js';
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
import { Manifests } from './vfs/manifests.js';
import { Xattrs } from './vfs/xattrs.js';
import { PinManager } from './pins/pin-manager.js';
import { registerPinRequests } from './pins/requests.js';
import { ConflictMarks } from './sync-state/conflict-marks.js';
import { registerPathStatus } from './sync-state/requests.js';
import { SyncStates } from './sync-state/sync-state.js';
import type { Logger } from 'pino';
import { sayTo, type Say } from './log.js';
import { DriveMetrics } from './metrics.js';


/**
 * How long the kernel keeps names and attributes without asking the drive. Long, because a walk
 * of a large tree (`ls -lR`, a file manager) otherwise asks for nearly every entry again (each a
 * round trip into JS); safe, because what changes them not through the kernel is made stale at
 * once (KernelRefresher: names forgotten, attributes refreshed).
 */
const KERNEL_CACHE_S = 30;
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
  /** Seconds the kernel keeps names and attributes (entry and attr timeouts); default KERNEL_CACHE_S. */
  attrTimeout?: number;
  /** The drive's log (pino: levels, JSON to a file, pretty on a terminal); default: nothing logged. */
  logger?: Logger;
  /** Instead of `logger`: one callback for every line (tests). */
  log?: Say;
  /** Serve the control socket `stratus status`, `stratus unmount` and the file commands use (default true). */
  control?: boolean;
  /** Let other users than the mounting one use the drive (FUSE allow_other; a normal user needs user_allow_other in /etc/fuse.conf). */
  allowOther?: boolean;
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
  /** The drive's Prometheus metrics (served by `--metrics HOST:PORT` and the control socket's `metrics` request). */
  metrics: DriveMetrics;
  /** What `stratus status` shows. */
  status(): MountStatus;
  /**
   * The drive's control socket (mount/control/server.ts): add requests with `control.handle`.
   * stop() stops it taking requests; `control.close()` then waits for the answers in flight.
   */
  control: ControlServer;
  /** Pinned ("available offline") folders and files (mount/pins/pin-manager.ts). */
  pins: PinManager;
  /** Per-file sync states (mount/sync-state/sync-state.ts). */
  states: SyncStates;
  /**
   * Drains pending commits (up to `drainTimeoutMs`, telling `progress` the count; `abort` cuts the
   * drain short), then unmounts and closes. What is not sent stays queued on disk.
   */
  stop(opts?: { drainTimeoutMs?: number; progress?: (count: number, bytes: number) => void; abort?: AbortSignal }): Promise<{ drained: boolean }>;
  /** Detaches the FUSE mount now (lazily), whatever else is still closing; safe to call twice. */
  unmountNow(): Promise<void>;
}

/** The default cache folder of DESIGN §9: per server and user, under XDG_CACHE_HOME or ~/.cache. */
export function defaultCacheDir(server: string, user: string): string {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  const url = new URL(server);
  const key = `${url.hostname}_${url.port || (url.protocol === 'https:' ? '443' : '80')}_${user}`.replace(/[^A-Za-z0-9._-]/g, '_');
  return join(base, 'stratus', key);
}

/** How long a status request waits for the kernel refreshes of the changes already pulled. */
const STATUS_REFRESH_WAIT_MS = 2_000;

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
  const log: Say = opts.log ?? (opts.logger ? sayTo(opts.logger) : () => undefined);
  /** Lines of one part of the drive (its name is a field of the JSON lines). */
  const logOf = (component: string): Say => opts.log ?? (opts.logger ? sayTo(opts.logger, component) : () => undefined);
  const metrics = new DriveMetrics();
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
    // Blocks, the state database and staging files: this user's only, whatever the umask.
    await makePrivateDir(cacheDir);
    const stagingDir = join(cacheDir, 'staging');
    await mkdir(stagingDir, { recursive: true, mode: 0o700 });

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
    tree.onBroken = (err) => log(`${err.message}: restart the drive once the cache folder's disk is writable (what was acknowledged before is safe on disk)`, 'error');
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
    // Pins before anything claims cache room (the log's reservations below): their blocks must not be evicted.
    const manifests = new Manifests(client, store);
    const pins = new PinManager({ tree, store, cache, manifests, fetchBlock: (hash, size) => source.fetch(hash, size), log });
    closers.push(() => pins.close());
    await pins.restore();

    // The log first: the first pull must know which nodes have changes still to send.
    const device = opts.device ?? whoami.device.name;
    const oplog = new OpLog(store, tree);
    await oplog.load((bytes) => cache.reserve(bytes));
    const source = new BlockSource(client, cache, pool, { log: logOf('cache'), onFetch: (seconds, ok) => metrics.fetchSeconds.observe({ outcome: ok ? 'ok' : 'failed' }, seconds) });
    const sender = new Sender({ log: oplog, tree, store, client, pool, cache, source, config, device, say: logOf('sender') });
    closers.push(() => sender.stop());
    sender.start();
    await removeOrphanStaging(stagingDir, new Set(oplog.list().flatMap((e) => (e.op.kind === 'content' ? [e.op.staging] : []))));

    const events = new EventsClient({ server: opts.server, token: opts.token, log: logOf('events') });
    closers.push(() => events.close());
    const syncer = new Syncer({ client, tree, cursor, hints: events, log: logOf('sync') });
    closers.push(() => syncer.close());
    // Online, the drive shows current state from its first listing; offline, it catches up later.
    if (!startedOffline) await syncer.pullNow().catch(() => undefined);

    // Per-file sync state (user.stratus.* attributes, `stratus status PATH`); pins keep what arrives under them.
    const conflicts = new ConflictMarks();
    const states = new SyncStates({ tree, log: oplog, cache, manifests, pins, conflicts, localContent: (ino): boolean => vfs.hasLocalContent(ino) });
    sender.on('committed', conflicts.committed);
    sender.on('committed', () => pins.changed());
    syncer.on('applied', () => pins.changed());
    const vfs = new Vfs({ tree, log: oplog, client, source, cache, store, stagingDir, maxFileSize: fileSizeLimit(config), manifests, xattrs: new Xattrs(states) });
    const kernelCacheS = opts.attrTimeout ?? KERNEL_CACHE_S;
    const fuse = await mountFuse(mountpoint, fuseOps(vfs, logOf('fuse')), { attrTimeout: kernelCacheS, entryTimeout: kernelCacheS, allowOther: opts.allowOther });
    let unmounting: Promise<void> | undefined;
    const unmountOnce = (): Promise<void> => (unmounting ??= fuse.unmount());
    closers.push(unmountOnce);
    log(`mounted ${identity} at ${mountpoint} (cache ${cacheDir})${startedOffline ? `; server unreachable (${offlineReason}), started from the saved tree` : ''}`);

    // Changes not made through the kernel (remote ones, the server's replies): names it may hold
    // and attributes or pages of files it may cache are made stale at once, not after the timeouts.
    const refresher = new KernelRefresher({ mountpoint, tree, skip: (ino) => vfs.hasLocalContent(ino), expect: vfs.expectTouch, expectForget: vfs.expectForget });
    closers.push(() => refresher.close());
    syncer.on('applied', (_changes, files) => refresher.refresh(files));
    tree.onVacated = (path, kind) => refresher.forget(path, kind);
    tree.onStale = (ino) => refresher.refresh([ino]);
    tree.onSettled = (ino) => refresher.settled(ino);

    // With no commit pending, this is when the drive became idle (the bench's "until committed").
    let pendingChangedAt = Date.now();
    oplog.on('changed', () => (pendingChangedAt = Date.now()));
    // When anything the status shows last changed (a poller waits for a status newer than its change).
    let updatedAt = Date.now();
    oplog.on('changed', () => (updatedAt = Date.now()));
    syncer.on('status', () => (updatedAt = Date.now()));
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
      updatedAt: new Date(updatedAt).toISOString(),
    });
    const control = new ControlServer(mountpoint);
    // After the kernel has been told of the changes pulled so far (a status showing a cursor means
    // the drive shows what it names), bounded so a busy refresher never holds the answer up.
    control.handle('status', async () => {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([refresher.idle(), new Promise((resolve) => (timer = setTimeout(resolve, STATUS_REFRESH_WAIT_MS)))]);
      clearTimeout(timer);
      return status();
    });
    registerPinRequests(control, pins);
    registerPathStatus(control, tree, states);
    metrics.attach({
      totals: () => ({
        cacheHits: source.stats.cacheHits,
        cacheHitBytes: source.stats.cacheHitBytes,
        cacheMisses: source.stats.cacheMisses,
        fetchedBytes: source.stats.fetchedBytes,
        uploadedBlocks: sender.stats.uploadedBlocks,
        uploadedBytes: sender.stats.uploadedBytes,
        commits: sender.stats.commits,
        conflicts: sender.stats.conflicts,
      }),
      queue: () => ({ count: sender.pendingCount, bytes: sender.pendingBytes }),
      cache: () => {
        const c = cache.stats();
        return { bytes: c.bytes, maxBytes: c.maxBytes, blocks: c.blocks };
      },
      senderState: () => {
        if (!syncer.online) return 'offline';
        const now = Date.now();
        return oplog.list().some((e) => e.send.backoff !== undefined && e.send.retryAt > now) ? 'backoff' : 'online';
      },
    });
    // Prometheus text, as `--metrics HOST:PORT` serves it.
    control.handle('metrics', async () => ({ contentType: metrics.contentType, text: await metrics.text() }));
    if (opts.control !== false) {
      await control.listen();
      // Not awaited: answers in flight (an unmount waiting for the stop) end after the stop.
      closers.push(async () => void control.close());
    }

    // The server is back: what waits in the log goes now, not after its retry backoff (up to 30 s).
    let wasOnline = syncer.online;
    syncer.on('status', () => {
      if (syncer.online && !wasOnline) sender.retryNow();
      wasOnline = syncer.online;
    });

    syncer.start();
    events.start();
    // What changed under the pins while the drive was stopped, and what the restore could not fetch.
    pins.changed();

    let stopping: Promise<{ drained: boolean }> | undefined;
    const stop: RunningMount['stop'] = (s = {}) =>
      (stopping ??= (async () => {
        const aborted = new Promise<boolean>((resolve) => {
          if (s.abort?.aborted) resolve(false);
          s.abort?.addEventListener('abort', () => resolve(false), { once: true });
        });
        const drained = await Promise.race([sender.drain(s.drainTimeoutMs ?? 60_000, s.progress), aborted]);
        // No new requests; the answers in flight (an unmount waiting for this) go out before control.close() ends.
        void control.close();
        // No more remote changes or kernel refreshes once unmounting starts.
        await events.close();
        await syncer.close();
        await refresher.close();
        await unmountOnce();
        await closeAll();
        return { drained };
      })());
    return { mountpoint, cacheDir, whoami, config, vfs, log: oplog, sender, cache, source, tree, events, syncer, startedOffline, metrics, status, control, pins, states, stop, unmountNow: unmountOnce };
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

