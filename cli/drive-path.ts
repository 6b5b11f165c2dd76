import { realpath } from 'node:fs/promises';
import path from 'node:path';
import { runningDrives as answeringDrives } from '../mount/control/client.js';
import { StratusClient } from '../protocol/client.js';
import { ApiError } from '../protocol/errors.js';
import type { NodeInfo, WhoAmI } from '../protocol/types.js';
import { readCredentials } from './credentials.js';
import { sourceOf } from './config.js';

/**
 * Paths on a mounted drive, for the file commands (DESIGN §9): which running drive holds a path,
 * a client of that drive's server as that drive's user, and the server node the path names.
 */

/** A running drive: where it is mounted (also as a real path), its server and its user. */
export interface Drive {
  mountpoint: string;
  realMountpoint: string;
  pid: number;
  server: string;
  user: string;
}

/** Every running drive whose mountpoint resolves and that has said which server and user it is. */
async function runningDrives(): Promise<Drive[]> {
  const drives: Drive[] = [];
  // This user's drives, as they answer on their control sockets (mount/control/).
  for (const status of await answeringDrives()) {
    const realMountpoint = await realpath(status.mountpoint).catch(() => undefined);
    if (realMountpoint === undefined) continue;
    drives.push({ mountpoint: status.mountpoint, realMountpoint, pid: status.pid, server: status.server, user: status.user });
  }
  return drives;
}

/** `child` is `dir` or under it (both real, absolute paths). */
function within(dir: string, child: string): boolean {
  const rel = path.relative(dir, child);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}

/** A path on a drive: the drive, and the names from the drive's root to it (none: the root). */
export interface DrivePath {
  drive: Drive;
  names: string[];
  /** The path as the user gave it, for messages. */
  shown: string;
}

/**
 * The running drive that holds `given` (compared as real paths, so symbolic links and `..` are
 * followed as the kernel follows them), and the names leading to it from the drive's root. The
 * innermost drive wins when one is mounted inside another.
 */
export async function locateOnDrive(given: string): Promise<DrivePath> {
  let real: string;
  try {
    real = await realpath(path.resolve(given));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new Error(`${given}: no such file or folder`);
    throw new Error(`${given}: ${code ?? (err as Error).message}`);
  }
  const holding = (await runningDrives()).filter((d) => within(d.realMountpoint, real));
  const drive = holding.sort((a, b) => b.realMountpoint.length - a.realMountpoint.length)[0];
  if (!drive) throw new Error(`${given} is not on a mounted Stratus drive (see \`stratus status\`)`);
  const rel = path.relative(drive.realMountpoint, real);
  return { drive, names: rel === '' ? [] : rel.split(path.sep).map((n) => n.normalize('NFC')), shown: given };
}

/** The drive for a command without PATH: the one holding the current folder, else the only one running. */
export async function defaultDrive(): Promise<Drive> {
  const drives = await runningDrives();
  const cwd = await realpath(process.cwd()).catch(() => undefined);
  const here = cwd === undefined ? [] : drives.filter((d) => within(d.realMountpoint, cwd)).sort((a, b) => b.realMountpoint.length - a.realMountpoint.length);
  if (here[0]) return here[0];
  if (drives.length === 1) return drives[0]!;
  if (drives.length === 0) throw new Error('no Stratus drive is mounted');
  throw new Error(`several Stratus drives are mounted (${drives.map((d) => d.mountpoint).join(', ')}): give a path on one of them`);
}

/**
 * A client of the drive's server with a token of the drive's user: `--token`, else
 * `$STRATUS_TOKEN`, else the one the drive process left for the CLI (cli/credentials.ts). A token
 * of another user is refused (the path would be looked up in someone else's tree).
 */
export async function driveClient(drive: Drive, token?: string): Promise<StratusClient> {
  let source: string;
  if (token !== undefined) source = sourceOf('token') ?? '--token';
  else if (process.env.STRATUS_TOKEN) [token, source] = [process.env.STRATUS_TOKEN, '$STRATUS_TOKEN'];
  else {
    const creds = await readCredentials(drive.mountpoint);
    if (!creds) throw new Error(`no token for the drive at ${drive.mountpoint}: set STRATUS_TOKEN or give --token-file FILE`);
    [token, source] = [creds.token, `the drive at ${drive.mountpoint}`];
  }
  const client = new StratusClient({ server: drive.server, token, connections: 4 });
  let me: WhoAmI;
  try {
    me = await client.whoami();
  } catch (err) {
    await client.close();
    if (err instanceof ApiError && err.code === 'unauthorized') throw new Error(`the token from ${source} is not accepted by ${drive.server}`);
    throw new Error(`cannot reach the server at ${drive.server}: ${describe(err)}`);
  }
  if (me.user.name !== drive.user) {
    await client.close();
    throw new Error(`the token from ${source} is ${me.user.name}'s, but the drive at ${drive.mountpoint} is ${drive.user}'s`);
  }
  return client;
}

/**
 * The server node `names` lead to from the user's root, walking folder listings page by page
 * (a share with the user is an entry of theirs, listed under its id). Not found: a clear error
 * (a name the drive has not sent yet is not on the server).
 */
export async function resolveNames(client: StratusClient, at: DrivePath): Promise<NodeInfo> {
  let node = await client.root();
  for (const [i, name] of at.names.entries()) {
    if (node.kind !== 'dir') throw new Error(`${at.shown}: ${at.names.slice(0, i).join('/')} is not a folder on the server`);
    const found = await childNamed(client, node.id, name);
    if (!found) {
      const where = at.names.slice(0, i + 1).join('/');
      throw new Error(`${at.shown}: ${where} is not on the server (yet: if it was just made or renamed, the drive may still be sending it; see \`stratus status\`)`);
    }
    node = found;
  }
  return node;
}

async function childNamed(client: StratusClient, dirId: string, name: string): Promise<NodeInfo | undefined> {
  let after: string | undefined;
  for (;;) {
    const page = await client.children(dirId, { after });
    const hit = page.children.find((c) => c.name === name);
    if (hit) return hit;
    if (page.next === null) return undefined;
    after = page.next;
  }
}

/** One line for a failure of a request: the server's message, or why it could not be asked. */
export function describe(err: unknown): string {
  if (err instanceof ApiError) return err.message;
  const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
  return e.code ?? e.cause?.code ?? e.message ?? String(err);
}
