/**
 * The mountpoint before and after a mount: leftovers of a crashed mount, clear errors for a
 * mountpoint that cannot be used, and unmounting from outside (`stratus unmount MOUNTPOINT`).
 *
 * Everything here is asynchronous (child processes through execFile, never execSync): a
 * synchronous call that touches a FUSE mount served by this process would deadlock it, since
 * the FUSE callbacks run on this event loop.
 */
import { execFile } from 'node:child_process';
import { readdir, readFile, realpath, stat, statfs } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** The fstype /proc/self/mountinfo shows for a Stratus mount (`subtype=stratus`). */
export const STRATUS_FSTYPE = 'fuse.stratus';

/** How long a stat of a possibly hung mount may take before it counts as not answering. */
const STAT_TIMEOUT_MS = 5_000;

/** One line of /proc/self/mountinfo. */
export interface MountEntry {
  mountpoint: string;
  fstype: string;
  source: string;
}

/** Undoes the octal escapes (\040 space, \011 tab, \012 newline, \134 backslash) of mountinfo. */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Parses /proc/self/mountinfo text (proc(5)): `id parent maj:min root mountpoint options [optional...] - fstype source superoptions`. */
export function parseMountinfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const fields = line.split(' ');
    const sep = fields.indexOf('-', 6);
    const mountpoint = fields[4];
    const fstype = fields[sep + 1];
    if (sep < 0 || mountpoint === undefined || fstype === undefined) continue;
    entries.push({ mountpoint: unescapeMountField(mountpoint), fstype, source: unescapeMountField(fields[sep + 2] ?? '') });
  }
  return entries;
}

/** The mounts stacked on `mnt` (an absolute, canonical path), bottom first; none where /proc is missing. */
export async function mountsAt(mnt: string): Promise<MountEntry[]> {
  let text: string;
  try {
    text = await readFile('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  return parseMountinfo(text).filter((e) => e.mountpoint === mnt);
}

/**
 * The absolute path the kernel lists for `mountpoint`: its parent resolved through symlinks,
 * the last component kept as is (realpath of a dead FUSE mount itself fails with ENOTCONN).
 */
export async function canonicalMountpoint(mountpoint: string): Promise<string> {
  const abs = path.resolve(mountpoint);
  const parent = path.dirname(abs);
  if (parent === abs) return abs;
  try {
    return path.join(await realpath(parent), path.basename(abs));
  } catch {
    return abs;
  }
}

type Probe = { state: 'ok'; isDirectory: boolean } | { state: 'error'; code: string; message: string } | { state: 'timeout' };

/** statfs(2) and stat(2) that give up waiting after `ms` (a hung FUSE daemon would block them for good). */
async function probe(mnt: string, ms = STAT_TIMEOUT_MS): Promise<Probe> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<Probe>((resolve) => {
    timer = setTimeout(() => resolve({ state: 'timeout' }), ms);
  });
  // statfs first: the kernel always asks a FUSE daemon for it, where a stat may be answered from
  // attributes it still caches (for attr_timeout) even after the daemon died.
  const statted = statfs(mnt)
    .then(() => stat(mnt))
    .then(
      (st): Probe => ({ state: 'ok', isDirectory: st.isDirectory() }),
      (err: NodeJS.ErrnoException): Probe => ({ state: 'error', code: err.code ?? 'UNKNOWN', message: err.message }),
    );
  try {
    return await Promise.race([statted, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function isDead(p: Probe): boolean {
  return p.state === 'error' && (p.code === 'ENOTCONN' || p.code === 'ECONNABORTED');
}

function firstLine(err: unknown): string {
  const e = err as { code?: string | number; stderr?: string; message?: string };
  if (e.code === 'ENOENT') return 'not installed';
  const text = (e.stderr ?? '').trim() || (e.message ?? String(err));
  return text.split('\n')[0] ?? text;
}

/**
 * Detaches whatever FUSE mount sits on `mnt` (lazily, so a busy mount goes too): `fusermount -uz`
 * (works for a normal user too), then `fusermount3 -uz`, then `umount -l` (root, when no fuse
 * package is installed). Does not talk to the daemon, so it is safe to run from the process that
 * serves the mount.
 */
async function detach(mnt: string): Promise<void> {
  const attempts: Array<[string, string[]]> = [
    ['fusermount', ['-uz', mnt]],
    ['fusermount3', ['-uz', mnt]],
    ['umount', ['-l', mnt]],
  ];
  const failures: string[] = [];
  for (const [cmd, args] of attempts) {
    try {
      await execFileAsync(cmd, args, { timeout: 30_000 });
      return;
    } catch (err) {
      failures.push(`${cmd}: ${firstLine(err)}`);
      // Someone else (or an earlier attempt that reported an error) may have unmounted it.
      if ((await mountsAt(mnt)).length === 0 && !isDead(await probe(mnt))) return;
    }
  }
  throw new Error(`cannot unmount ${mnt} (${failures.join('; ')})`);
}

/**
 * If a crashed mount left `mountpoint` as a dead FUSE mount (stat fails with ENOTCONN, "Transport
 * endpoint is not connected"), unmounts it so the mountpoint is a plain directory again.
 * Resolves true when it unmounted something. A live mount is left alone (checkMountpoint then
 * reports it); a Stratus mount that does not answer at all is an error, since unmounting it could
 * pull the drive from under a stratus process that is only slow.
 */
export async function cleanStaleMount(mountpoint: string): Promise<boolean> {
  const mnt = await canonicalMountpoint(mountpoint);
  const mounts = await mountsAt(mnt);
  const state = await probe(mnt);
  if (isDead(state)) {
    await detach(mnt);
    const after = await probe(mnt);
    if (isDead(after)) throw new Error(`mountpoint ${mountpoint} is still a dead FUSE mount after unmounting it`);
    return true;
  }
  if (state.state === 'timeout') {
    const what = mounts.some((m) => m.fstype === STRATUS_FSTYPE) ? 'a Stratus mount' : 'a mount';
    throw new Error(
      `mountpoint ${mountpoint} is ${what} that does not answer (a hung stratus process?); stop it or run: stratus unmount ${mountpoint}`,
    );
  }
  return false;
}

/**
 * Throws a clear Error when `mountpoint` cannot take the mount: it must exist, be an empty
 * directory and not be mounted already. Never creates it.
 */
export async function checkMountpoint(mountpoint: string): Promise<void> {
  const state = await probe(path.resolve(mountpoint));
  if (state.state === 'timeout') throw new Error(`mountpoint ${mountpoint} does not answer (a hung FUSE mount?)`);
  if (state.state === 'error') {
    if (state.code === 'ENOENT' || state.code === 'ENOTDIR') throw new Error(`mountpoint ${mountpoint} does not exist`);
    if (isDead(state)) throw new Error(`mountpoint ${mountpoint} is a dead FUSE mount (run: stratus unmount ${mountpoint})`);
    if (state.code === 'EACCES' || state.code === 'EPERM') throw new Error(`mountpoint ${mountpoint} is not accessible (permission denied)`);
    throw new Error(`mountpoint ${mountpoint}: ${state.message}`);
  }
  if (!state.isDirectory) throw new Error(`mountpoint ${mountpoint} is not an empty directory`);
  const mounted = await mountsAt(await canonicalMountpoint(mountpoint));
  const top = mounted.at(-1);
  if (top) throw new Error(`mountpoint ${mountpoint} is already mounted (${top.fstype})`);
  let names: string[];
  try {
    names = await readdir(mountpoint);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') throw new Error(`mountpoint ${mountpoint} is not accessible (permission denied)`);
    throw new Error(`mountpoint ${mountpoint}: ${(err as Error).message}`);
  }
  if (names.length > 0) throw new Error(`mountpoint ${mountpoint} is not an empty directory`);
}

/**
 * Unmounts the FUSE mount at `mountpoint` from outside the process that serves it (used by
 * `stratus unmount MOUNTPOINT`). Refuses what is not mounted or not a FUSE mount. The serving
 * process sees its mount end; pending work it had not committed is its own business.
 */
export async function unmount(mountpoint: string): Promise<void> {
  const mnt = await canonicalMountpoint(mountpoint);
  const top = (await mountsAt(mnt)).at(-1);
  if (!top) {
    // Without /proc (or in another mount namespace) a dead mount still shows as ENOTCONN.
    if (isDead(await probe(mnt))) return detach(mnt);
    throw new Error(`${mountpoint} is not mounted`);
  }
  if (top.fstype !== 'fuse' && !top.fstype.startsWith('fuse.')) throw new Error(`${mountpoint} is not a FUSE mount (${top.fstype})`);
  await detach(mnt);
}

/** Like unmount, but a mountpoint that is not mounted (any more) is fine: the end state is the same. */
export async function unmountIfMounted(mountpoint: string): Promise<void> {
  const mnt = await canonicalMountpoint(mountpoint);
  if ((await mountsAt(mnt)).length === 0 && !isDead(await probe(mnt))) return;
  await detach(mnt);
}
