import { lstat, readdir } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import type { MountStatus } from '../status.js';
import { assertPrivateDir } from './private-dir.js';
import { runtimeDir, socketPath, SOCKET_SUFFIX } from './runtime-dir.js';
import { encodeFrame, LineSplitter, type ControlFrame } from './wire.js';

/**
 * The CLI's side of the control socket (mount/control/server.ts): asks a drive of this user a
 * request and reads its progress and result. Only sockets of this user in this user's private
 * runtime folder are ever used: a folder or socket someone else could have made is refused.
 */

/** No drive of this user answers at that mountpoint. `stale`: a socket is there, but no process (a crashed drive). */
export class NoDriveError extends Error {
  constructor(
    readonly mountpoint: string,
    readonly stale: boolean,
  ) {
    super(`no stratus drive is mounted at ${mountpoint}${stale ? ' (stale control socket of a drive that is gone)' : ''}`);
    this.name = 'NoDriveError';
  }
}

export interface AskOptions {
  /** Called with each progress message the drive streams. */
  onProgress?: (data: unknown) => void;
  /** Gives up after this long (default: no limit). */
  timeoutMs?: number;
}

/** Throws NoDriveError unless `path` is a socket of this user in this user's private runtime folder. */
async function checkSocket(mountpoint: string, path: string): Promise<void> {
  try {
    await assertPrivateDir(runtimeDir());
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NoDriveError(mountpoint, false);
    throw err;
  }
  const st = await lstat(path).catch(() => undefined);
  if (!st) throw new NoDriveError(mountpoint, false);
  const uid = process.getuid?.();
  if (!st.isSocket() || (uid !== undefined && st.uid !== uid)) throw new Error(`${path} is not a control socket of this user`);
}

/** Sends `request` to the socket at `path`; resolves with the result, rejects with the drive's error. */
function ask(mountpoint: string, path: string, request: string, args: unknown, opts: AskOptions): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(path);
    const lines = new LineSplitter();
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (err: Error | undefined, value?: unknown) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    if (opts.timeoutMs !== undefined) timer = setTimeout(() => finish(new Error(`the drive at ${mountpoint} did not answer "${request}" within ${Math.round(opts.timeoutMs! / 1000)} s`)), opts.timeoutMs);
    socket.setEncoding('utf8');
    socket.once('connect', () => socket.write(encodeFrame({ request, args })));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') finish(new NoDriveError(mountpoint, err.code === 'ECONNREFUSED'));
      else finish(new Error(`the drive at ${mountpoint}: ${err.code ?? err.message}`));
    });
    socket.on('data', (chunk: string) => {
      for (const line of lines.push(chunk)) {
        let frame: ControlFrame;
        try {
          frame = JSON.parse(line) as ControlFrame;
        } catch {
          finish(new Error(`the drive at ${mountpoint} answered something that is not a control message`));
          return;
        }
        if ('progress' in frame) opts.onProgress?.(frame.progress);
        else if ('result' in frame) finish(undefined, frame.result);
        else if ('error' in frame) finish(new Error(frame.error));
      }
    });
    socket.once('close', () => finish(new Error(`the drive at ${mountpoint} closed the control connection without an answer to "${request}"`)));
  });
}

/** Asks the drive at `mountpoint` (this user's) `request`; NoDriveError when none answers. */
export async function askDrive(mountpoint: string, request: string, args?: unknown, opts: AskOptions = {}): Promise<unknown> {
  const path = socketPath(mountpoint);
  await checkSocket(mountpoint, path);
  return ask(mountpoint, path, request, args, opts);
}

/** How long a status request may take (a drive answers it from memory). */
const STATUS_TIMEOUT_MS = 10_000;

/** The status of this user's drive at `mountpoint` (NoDriveError when none answers there). */
export async function driveStatus(mountpoint: string): Promise<MountStatus> {
  return (await askDrive(mountpoint, 'status', undefined, { timeoutMs: STATUS_TIMEOUT_MS })) as MountStatus;
}

/** Like driveStatus, undefined when no drive answers (for polling). */
export async function readStatus(mountpoint: string): Promise<MountStatus | undefined> {
  return driveStatus(mountpoint).catch(() => undefined);
}

/** The status of every drive of this user that answers on its control socket, by mountpoint. */
export async function runningDrives(): Promise<MountStatus[]> {
  const dir = runtimeDir();
  let names: string[];
  try {
    await assertPrivateDir(dir);
    names = (await readdir(dir)).filter((n) => n.endsWith(SOCKET_SUFFIX));
  } catch {
    return [];
  }
  const found = await Promise.all(
    names.map(async (name) => {
      const path = join(dir, name);
      const st = await lstat(path).catch(() => undefined);
      if (!st?.isSocket() || st.uid !== process.getuid?.()) return undefined;
      const status = await (ask(name, path, 'status', undefined, { timeoutMs: STATUS_TIMEOUT_MS }) as Promise<MountStatus>).catch(() => undefined);
      // Only a drive serving its own mountpoint's socket.
      return status && socketPath(status.mountpoint) === path ? status : undefined;
    }),
  );
  return found.filter((s): s is MountStatus => s !== undefined).sort((a, b) => (a.mountpoint < b.mountpoint ? -1 : 1));
}
