import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { bin, type RunAs } from './drive.js';

/**
 * Normal (non-root) users for the tests that run the drive the way people do: made with useradd
 * by the test (run as root), removed with their home at teardown. Plus what such a user needs of
 * the machine, each granted as root and restored at teardown.
 */

const execFileAsync = promisify(execFile);

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface SystemUser extends RunAs {
  name: string;
  home: string;
}

/** Why these tests cannot run here (not root, no useradd), or undefined. */
export function systemUsersUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (to create users with useradd)';
  return undefined;
}

/** A fresh normal user with a home folder; removed (with its home) at teardown. */
export async function createSystemUser(t: Teardown, prefix = 'stx'): Promise<SystemUser> {
  const name = `${prefix}${randomBytes(4).toString('hex')}`;
  await execFileAsync('useradd', ['--create-home', '--shell', '/bin/sh', name]);
  t.teardown(() => execFileAsync('userdel', ['--remove', name]).catch(() => undefined));
  const { stdout } = await execFileAsync('getent', ['passwd', name]);
  const [, , uid, gid, , home] = stdout.trim().split(':');
  const user: SystemUser = {
    name,
    uid: Number(uid),
    gid: Number(gid),
    home: home!,
    // A login's environment: nothing of root's (no XDG_RUNTIME_DIR a test set, no STRATUS_TOKEN).
    env: {
      HOME: home,
      USER: name,
      LOGNAME: name,
      PATH: '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin',
      LANG: 'C.UTF-8',
      // tap's process-info hook (added to every child's NODE_OPTIONS) writes .tap/processinfo/ at
      // exit under this folder (default: the checkout, which the user cannot write): the user's home.
      _TAPJS_PROCESSINFO_CWD_: home,
    },
  };
  await assertCliRunnable(user);
  return user;
}

/** What a command run as a user did. */
export interface UserRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `file args` as `user` (in its home); never rejects: the exit code says how it went. */
export function runAs(user: RunAs, file: string, args: string[], opts: { timeoutMs?: number } = {}): Promise<UserRun> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { uid: user.uid, gid: user.gid, env: user.env, cwd: user.env.HOME, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      resolve({ code: -1, stdout, stderr: stderr + err.message });
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : -1), stdout, stderr });
    });
  });
}

/** `stratus ARGS` as `user` (the built CLI, dist/). */
export function stratusAs(user: RunAs, args: string[], opts: { timeoutMs?: number } = {}): Promise<UserRun> {
  return runAs(user, process.execPath, [bin, ...args], opts);
}

/** A shell command line as `user`. */
export function shAs(user: RunAs, cmd: string): Promise<UserRun> {
  return runAs(user, '/bin/sh', ['-c', cmd]);
}

/**
 * The built CLI must be readable by the user (every folder on the way to dist/ and node_modules/
 * traversable by others). Fails with a clear message instead of a puzzling import error.
 */
async function assertCliRunnable(user: RunAs): Promise<void> {
  const r = await stratusAs(user, ['--version'], { timeoutMs: 30_000 });
  if (r.code !== 0) {
    throw new Error(
      `the built CLI (${bin}) cannot be run by a normal user (exit ${r.code}: ${r.stderr.trim().split('\n')[0]}); ` +
        'make the checkout readable and its parent folders traversable by others (chmod o+rx), then run the test again',
    );
  }
}

/** A folder `owner` owns (mode 0755, so other users can reach what is inside), made in the temp folder; removed at teardown. */
export async function userDir(t: Teardown, owner: RunAs, prefix: string): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), `stratus-${prefix}-`));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  await fs.chown(dir, owner.uid, owner.gid);
  await fs.chmod(dir, 0o755);
  return dir;
}

/**
 * Makes /dev/fuse readable and writable by everyone, as stock Debian ships it (mode 0666): these
 * machines ship it 0600 root, where a normal user's fusermount cannot open it (rclone fails the
 * same way here). The original mode is put back at teardown.
 */
export async function grantDevFuse(t: Teardown): Promise<void> {
  const { mode } = await fs.stat('/dev/fuse');
  if ((mode & 0o666) === 0o666) return;
  await fs.chmod('/dev/fuse', 0o666);
  t.teardown(() => fs.chmod('/dev/fuse', mode & 0o7777));
}

export const FUSE_CONF = '/etc/fuse.conf';

/** Whether fuse.conf lets normal users mount with allow_other already. */
export async function userAllowOther(): Promise<boolean> {
  const text = await fs.readFile(FUSE_CONF, 'utf8').catch(() => '');
  return text.split('\n').some((l) => l.replace(/#.*/, '').trim() === 'user_allow_other');
}

/**
 * Adds `user_allow_other` to /etc/fuse.conf (what an administrator does so normal users may
 * mount with --allow-other); the file is put back as it was (or removed) at teardown.
 */
export async function grantUserAllowOther(t: Teardown): Promise<void> {
  if (await userAllowOther()) return;
  const before = await fs.readFile(FUSE_CONF, 'utf8').catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)));
  await fs.writeFile(FUSE_CONF, `${before ?? ''}${before && !before.endsWith('\n') ? '\n' : ''}user_allow_other\n`, { mode: 0o644 });
  t.teardown(() => (before === undefined ? fs.rm(FUSE_CONF, { force: true }) : fs.writeFile(FUSE_CONF, before)));
}
