import type { ControlServer } from '../mount/control/server.js';
import { askDrive } from '../mount/control/client.js';

/**
 * What a running drive tells the file commands (`stratus share PATH …`) over its control socket:
 * its server, its user and its device token, so they act on the drive's account without asking
 * for the token again. Only this user's processes can connect to the socket (it lives in the
 * per-user runtime folder, mode 0700: mount/control/runtime-dir.ts); nothing is written to disk.
 */
export interface DriveCredentials {
  mountpoint: string;
  server: string;
  user: string;
  token: string;
}

/** Makes the drive answer `credentials` requests with `creds`. */
export function serveCredentials(control: ControlServer, creds: DriveCredentials): void {
  control.handle('credentials', () => creds);
}

/** What the drive at `mountpoint` tells about its account, if one of this user answers there. */
export async function readCredentials(mountpoint: string): Promise<DriveCredentials | undefined> {
  const creds = (await askDrive(mountpoint, 'credentials', undefined, { timeoutMs: 10_000 }).catch(() => undefined)) as DriveCredentials | undefined;
  return typeof creds?.token === 'string' ? creds : undefined;
}
