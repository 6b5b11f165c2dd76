import { createHash } from 'node:crypto';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * Where one user's drives serve their control sockets (DESIGN §6): a per-user runtime folder,
 * mode 0700 (mount/control/private-dir.ts), `$XDG_RUNTIME_DIR/stratus`, else
 * `~/.cache/stratus/run`. Another user can neither list it nor connect to what is in it, so
 * nothing of one user's drives is readable or signalable by another; root's `stratus` looks in
 * root's own folder, never in a shared one.
 */
export function runtimeDir(): string {
  return process.env.XDG_RUNTIME_DIR ? join(process.env.XDG_RUNTIME_DIR, 'stratus') : join(homedir(), '.cache', 'stratus', 'run');
}

/** What a control socket's file name ends with. */
export const SOCKET_SUFFIX = '.sock';

/**
 * The control socket of the drive at `mountpoint`: named by a hash of its absolute path (a unix
 * socket path must stay under 108 bytes, whatever the mountpoint's length).
 */
export function socketPath(mountpoint: string): string {
  return join(runtimeDir(), `${createHash('sha256').update(resolve(mountpoint)).digest('hex').slice(0, 32)}${SOCKET_SUFFIX}`);
}
