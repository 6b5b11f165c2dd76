/// <reference path="./fuse-native.d.ts" />
/**
 * The FUSE binding: fuse-native 2.2.6 as patched by patches/fuse-native+2.2.6.patch (the
 * postinstall script applies it and rebuilds the addon into build/Release, which node-gyp-build
 * loads before the unpatched prebuilds), with the mount options Stratus needs.
 *
 * fuse-native is loaded lazily (loadFuse, mountFuse): importing this module never touches the
 * native addon, so commands that do not mount (serve, user add) work where FUSE does not.
 */
import { access, constants, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import type FuseNative from 'fuse-native';
import { checkMountpoint, cleanStaleMount, unmountIfMounted } from './stale.js';

export { checkMountpoint, cleanStaleMount, unmount } from './stale.js';

export type FuseOperations = FuseNative.Operations;
export type FuseStat = FuseNative.Stat;
export type FuseStatfs = FuseNative.Statfs;
export type FuseCallback = FuseNative.Callback;
export type ErrnoName = FuseNative.ErrnoName;

/** Requests the kernel sends are at most this large (libfuse2 caps them at 128 KiB). */
export const MAX_READ = 131072;

export interface FuseMountOptions {
  /** Seconds the kernel keeps attributes (attr_timeout); default 1. 0 is honoured. */
  attrTimeout?: number;
  /** Seconds the kernel keeps name lookups (entry_timeout); default 1. 0 is honoured. */
  entryTimeout?: number;
  /** Let other users than the mounting one in (allow_other; a normal user needs user_allow_other in /etc/fuse.conf). */
  allowOther?: boolean;
  /** libfuse's debug output on stderr. */
  debug?: boolean;
}

function seconds(name: string, value: number | undefined): string {
  const n = value ?? 1;
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) throw new RangeError(`${name} must be a number of seconds >= 0, got ${String(value)}`);
  return String(n);
}

/**
 * The raw option string handed to libfuse, bypassing fuse-native's option list (which drops
 * big_writes and negative_timeout, and any falsy value such as entryTimeout 0).
 */
export function fuseOptionString(opts: FuseMountOptions = {}): string {
  const options = [
    'fsname=stratus',
    'subtype=stratus',
    'default_permissions',
    // st_ino is the node's own inode number (stable for the life of the mount's state), not libfuse's.
    'use_ino',
    // 128 KiB WRITE requests instead of 4 KiB: ~10x write throughput.
    'big_writes',
    // Keep the page cache across opens unless mtime/size changed (kernel_cache never notices remote edits).
    'auto_cache',
    `max_read=${MAX_READ}`,
    `attr_timeout=${seconds('attrTimeout', opts.attrTimeout)}`,
    `entry_timeout=${seconds('entryTimeout', opts.entryTimeout)}`,
    // Files created remotely show up at once.
    'negative_timeout=0',
  ];
  if (opts.allowOther) options.push('allow_other');
  if (opts.debug) options.push('debug');
  return '-o' + options.join(',');
}

/** The constructor options given to fuse-native: no per-operation timeout (a lazy fetch may take long; it keeps its own deadline). */
export const FUSE_NATIVE_OPTIONS: Readonly<FuseNative.Options> = Object.freeze({ timeout: false });

const require = createRequire(import.meta.url);
/** glibc's RTLD_NODELETE (<dlfcn.h>); os.constants.dlopen does not list it. */
const RTLD_NODELETE = 0x1000;

function message(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n')[0] ?? text;
}

/**
 * Without the system's libfuse2, loads the libfuse.so (SONAME libfuse.so.2) that fuse-native's
 * dependency fuse-shared-library ships, so the addon's NEEDED libfuse.so.2 resolves to it. Node
 * refuses it as a module ("did not self-register") and closes it, so RTLD_NODELETE keeps it.
 */
function preloadBundledLibfuse(): void {
  const fromFuseNative = createRequire(require.resolve('fuse-native'));
  const { lib } = fromFuseNative('fuse-shared-library') as { lib: string };
  try {
    process.dlopen({ exports: {} }, lib, os.constants.dlopen.RTLD_NOW | RTLD_NODELETE);
  } catch (err) {
    if (!/did not self-register/.test(message(err))) {
      throw new Error(`libfuse.so.2 is missing (install libfuse2) and the copy fuse-native ships (${lib}) does not load: ${message(err)}`);
    }
  }
}

function loadFuseNative(): FuseNative.Constructor {
  let Base: FuseNative.Constructor;
  try {
    Base = require('fuse-native') as FuseNative.Constructor;
  } catch (err) {
    if (process.platform !== 'linux' || !/libfuse\.so\.2/.test(message(err))) {
      throw new Error(`cannot load the FUSE binding (fuse-native): ${message(err)}`);
    }
    preloadBundledLibfuse();
    try {
      Base = require('fuse-native') as FuseNative.Constructor;
    } catch (again) {
      throw new Error(`cannot load the FUSE binding (fuse-native): ${message(again)}`);
    }
  }
  if (!(Base.STRATUS_PATCH >= 2)) {
    throw new Error(
      'the FUSE binding is not the current patched build (patches/fuse-native+2.2.6.patch: utimens times, calls on open files whose path is gone): run `npm run postinstall` in the project',
    );
  }
  // fuse-native's own unmount (used when a Fuse closes) shells out to `fusermount -uz` only:
  // use ours, which has no shell, falls back to `umount -l` where no fuse package is installed,
  // and takes "already unmounted" for done.
  Base.unmount = (mnt, cb) => {
    unmountIfMounted(mnt).then(
      () => cb(null),
      (err: unknown) => cb(err instanceof Error ? err : new Error(String(err))),
    );
  };
  return Base;
}

function defineFuse(Base: FuseNative.Constructor) {
  /** fuse-native's Fuse with Stratus's options: raw -o string, no per-operation timeout. */
  return class Fuse extends Base {
    readonly mountOptions: Readonly<FuseMountOptions>;

    constructor(mnt: string, ops: FuseOperations, opts: FuseMountOptions = {}) {
      fuseOptionString(opts); // throws on bad values before anything happens
      super(mnt, ops, { ...FUSE_NATIVE_OPTIONS });
      this.mountOptions = Object.freeze({ ...opts });
    }

    override _fuseOptions(): string {
      return fuseOptionString(this.mountOptions);
    }
  };
}

export type FuseClass = ReturnType<typeof defineFuse>;
export type Fuse = InstanceType<FuseClass>;

let loaded: FuseClass | undefined;

/**
 * The Fuse class (a subclass of fuse-native's; the errno constants are on it: Fuse.ENOENT === -2).
 * Loads the native addon on first call; throws a clear Error when it cannot be loaded or is not
 * the patched build.
 */
export function loadFuse(): FuseClass {
  return (loaded ??= defineFuse(loadFuseNative()));
}

const ERRNO_NAMES = [
  'EPERM', 'ENOENT', 'ESRCH', 'EINTR', 'EIO', 'ENXIO', 'E2BIG', 'EBADF', 'EAGAIN', 'ENOMEM', 'EACCES',
  'EFAULT', 'EBUSY', 'EEXIST', 'EXDEV', 'ENODEV', 'ENOTDIR', 'EISDIR', 'EINVAL', 'ENFILE', 'EMFILE',
  'ENOTTY', 'ETXTBSY', 'EFBIG', 'ENOSPC', 'ESPIPE', 'EROFS', 'EMLINK', 'EPIPE', 'ERANGE', 'EDEADLK',
  'ENAMETOOLONG', 'ENOLCK', 'ENOSYS', 'ENOTEMPTY', 'ELOOP', 'EWOULDBLOCK', 'ENODATA', 'EOVERFLOW',
  'EILSEQ', 'EOPNOTSUPP', 'ENOTCONN', 'ETIMEDOUT', 'ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH',
  'ENETUNREACH', 'ESTALE', 'EDQUOT',
] as const satisfies readonly ErrnoName[];

/**
 * The errno codes a callback answers with (negative, as fuse-native wants them), usable without
 * loading the addon; the same values as loadFuse().ENOENT etc.
 */
export const Errno: Readonly<Record<(typeof ERRNO_NAMES)[number], number>> = Object.freeze(
  Object.fromEntries(
    ERRNO_NAMES.map((name) => {
      const code = (os.constants.errno as Record<string, number | undefined>)[name];
      if (code === undefined) throw new Error(`no errno ${name} on this platform`);
      return [name, -code];
    }),
  ) as Record<(typeof ERRNO_NAMES)[number], number>,
);

/** A live mount. */
export interface MountedFuse {
  /** The absolute mountpoint. */
  readonly mountpoint: string;
  readonly fuse: Fuse;
  /** Unmounts (lazily, so open files do not block it); resolves once it is done. Safe to call twice. */
  unmount(): Promise<void>;
}

/**
 * /dev/fuse must be there and, for a normal user (who mounts through the setuid fusermount, as
 * rclone does), readable and writable: stock Debian ships it mode 0666.
 */
async function requireDevFuse(): Promise<void> {
  if (process.platform !== 'linux') return;
  try {
    await access('/dev/fuse');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error('FUSE is not available here: /dev/fuse is missing (load the fuse kernel module; in a container, pass --device /dev/fuse)');
    throw new Error(`FUSE is not available here: /dev/fuse: ${message(err)}`);
  }
  try {
    await access('/dev/fuse', constants.R_OK | constants.W_OK);
  } catch {
    throw new Error('FUSE is not available to this user: /dev/fuse is not readable and writable by it (stock Debian makes it mode 0666)');
  }
}

/** FUSE's own configuration (fuse.conf(5)): what normal users may ask for. */
export const FUSE_CONF = '/etc/fuse.conf';

/** `user_allow_other` is set in fuse.conf text (a line of its own; # starts a comment). */
export function allowsOtherUsers(conf: string): boolean {
  return conf.split('\n').some((line) => line.replace(/#.*/, '').trim() === 'user_allow_other');
}

/** A normal user may mount with allow_other only where fuse.conf has user_allow_other: say so before fusermount refuses. */
async function requireAllowOther(): Promise<void> {
  if (process.getuid?.() === 0) return;
  const conf = await readFile(FUSE_CONF, 'utf8').catch(() => '');
  if (!allowsOtherUsers(conf)) throw new Error(`--allow-other needs a line user_allow_other in ${FUSE_CONF} (set by an administrator) for a normal user`);
}

/**
 * Mounts `ops` at `mountpoint`: loads the binding, removes a dead mount a crashed run left there,
 * checks the mountpoint (an existing empty directory, else a clear Error), mounts, and resolves
 * once the kernel talks to the mount.
 */
export async function mountFuse(mountpoint: string, ops: FuseOperations, opts: FuseMountOptions = {}): Promise<MountedFuse> {
  const FuseClass = loadFuse();
  const mnt = path.resolve(mountpoint);
  fuseOptionString(opts);
  await requireDevFuse();
  if (opts.allowOther) await requireAllowOther();
  await cleanStaleMount(mountpoint);
  await checkMountpoint(mountpoint);
  const fuse = new FuseClass(mnt, ops, opts);
  try {
    await new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(err) : resolve())));
  } catch (err) {
    // libfuse may have mounted before failing (fuse_new after fuse_mount): leave nothing behind.
    await unmountIfMounted(mnt).catch(() => undefined);
    throw new Error(`cannot mount FUSE at ${mountpoint}: ${message(err)}`);
  }
  let unmounting: Promise<void> | undefined;
  const unmount = (): Promise<void> =>
    (unmounting ??= new Promise<void>((resolve, reject) => fuse.unmount((err) => (err ? reject(err) : resolve()))).catch(
      (err: unknown) => {
        unmounting = undefined;
        throw err;
      },
    ));
  return { mountpoint: mnt, fuse, unmount };
}
