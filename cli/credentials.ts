import { createHash } from 'node:crypto';
import { lstat, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * What a running drive leaves for the file commands (`stratus share PATH …`): its server, its
 * user and its device token, so they act on the drive's account without asking for the token
 * again. One file per mountpoint, mode 0600, in the per-user runtime folder of DESIGN §6 (mode
 * 0700: `$XDG_RUNTIME_DIR/stratus`, else `~/.cache/stratus/run`); written when the drive is
 * ready, removed when it unmounts. A file left by a crashed drive is ignored: it names the pid of
 * the process that wrote it, which must be the mountpoint's live owner.
 */
export interface DriveCredentials {
  mountpoint: string;
  server: string;
  user: string;
  token: string;
  pid: number;
}

function runtimeDir(): string {
  return process.env.XDG_RUNTIME_DIR ? join(process.env.XDG_RUNTIME_DIR, 'stratus') : join(homedir(), '.cache', 'stratus', 'run');
}

function credentialsFile(mountpoint: string): string {
  return join(runtimeDir(), `${createHash('sha256').update(resolve(mountpoint)).digest('hex').slice(0, 32)}.drive.json`);
}

/** Refuses a runtime folder that is not ours or is open to anyone else. */
async function assertPrivate(dir: string): Promise<void> {
  const st = await lstat(dir);
  if (!st.isDirectory() || st.uid !== process.getuid?.() || (st.mode & 0o077) !== 0) {
    throw new Error(`${dir} is not a private folder of this user (owner and mode 0700)`);
  }
}

export async function keepCredentials(creds: DriveCredentials): Promise<void> {
  await mkdir(runtimeDir(), { recursive: true, mode: 0o700 });
  await assertPrivate(runtimeDir());
  const file = credentialsFile(creds.mountpoint);
  const tmp = `${file}.${process.pid}.tmp`;
  await rm(tmp, { force: true });
  await writeFile(tmp, `${JSON.stringify({ ...creds, mountpoint: resolve(creds.mountpoint) })}\n`, { mode: 0o600, flag: 'wx' });
  await rename(tmp, file);
}

export async function forgetCredentials(mountpoint: string): Promise<void> {
  await rm(credentialsFile(mountpoint), { force: true });
}

/** What the drive process `pid` left for `mountpoint`, if it is there and was written by that process. */
export async function readCredentials(mountpoint: string, pid: number): Promise<DriveCredentials | undefined> {
  let creds: DriveCredentials;
  try {
    await assertPrivate(runtimeDir());
    creds = JSON.parse(await readFile(credentialsFile(mountpoint), 'utf8')) as DriveCredentials;
  } catch {
    return undefined;
  }
  if (creds.pid !== pid || creds.mountpoint !== resolve(mountpoint) || typeof creds.token !== 'string') return undefined;
  return creds;
}
