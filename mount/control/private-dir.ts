import { chmod, lstat, mkdir } from 'node:fs/promises';

/**
 * Folders only their owner may enter (mode 0700): the per-user runtime folder of the control
 * sockets, a drive's cache folder (blocks, state database, staging files), a server's data
 * folder. Set explicitly (mkdir, then chmod), so the process's umask does not decide it.
 */

/** Creates `dir` (and missing parents) mode 0700, or makes an existing one of this user 0700; refuses one of another user. */
export async function makePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await lstat(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a folder`);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) throw new Error(`${dir} belongs to another user (uid ${st.uid}), not this one (uid ${uid})`);
  if ((st.mode & 0o777) !== 0o700) await chmod(dir, 0o700);
}

/** Throws unless `dir` is a folder of this user that nobody else can enter (mode 0700, no group or other bits). */
export async function assertPrivateDir(dir: string): Promise<void> {
  const st = await lstat(dir);
  const uid = process.getuid?.();
  if (!st.isDirectory() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o077) !== 0) {
    throw new Error(`${dir} is not a private folder of this user (owner and mode 0700)`);
  }
}
