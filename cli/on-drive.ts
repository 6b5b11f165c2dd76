import { realpath } from 'node:fs/promises';
import path from 'node:path';
import type { StratusClient } from '../protocol/client.js';
import { ApiError } from '../protocol/errors.js';
import type { NodeInfo } from '../protocol/types.js';
import { describe, driveClient, locateOnDrive, resolveNames, type Drive, type DrivePath } from './drive-path.js';

/**
 * What the history and trash commands share on top of cli/drive-path.ts: paths that may be gone
 * from the drive (what was deleted or renamed is still named by where it was), a client of the
 * drive's user for the length of a command, and failures of requests as one line.
 */

export const TOKEN_HELP = "device token of the drive's user (default: $STRATUS_TOKEN, else the running drive's own)";

/** A failed request as one line: what was being done, and the server's reason (or why it could not be asked). */
export function failed(what: string, drive: Drive, err: unknown): Error {
  if (err instanceof ApiError) return new Error(`cannot ${what}: ${err.message}`);
  if ((err as NodeJS.ErrnoException).code || (err as { cause?: unknown }).cause) return new Error(`cannot ${what}: no answer from ${drive.server} (${describe(err)})`);
  return err as Error;
}

/**
 * A path on a drive that may not exist there any more (`~/Stratus/Projects` after `rm -r` of it):
 * its nearest existing ancestor is located on a running drive (as real paths, like
 * `locateOnDrive`), and the missing names are added as given (NFC).
 */
export async function locateWasOnDrive(given: string): Promise<DrivePath> {
  const missing: string[] = [];
  let dir = path.resolve(given);
  for (;;) {
    try {
      await realpath(dir);
      break;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if ((code !== 'ENOENT' && code !== 'ENOTDIR') || dir === path.dirname(dir)) throw new Error(`${given}: ${code ?? (err as Error).message}`);
      missing.unshift(path.basename(dir).normalize('NFC'));
      dir = path.dirname(dir);
    }
  }
  const at = await locateOnDrive(dir);
  return { ...at, names: [...at.names, ...missing], shown: given };
}

/** Runs `fn` with a client of the drive's user (closed after). */
export async function withClient<T>(drive: Drive, token: string | undefined, fn: (client: StratusClient) => Promise<T>): Promise<T> {
  const client = await driveClient(drive, token);
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

/** The node a path names now, through the server (a failed look-up as one line). */
export async function nodeNow(client: StratusClient, at: DrivePath): Promise<NodeInfo> {
  try {
    return await resolveNames(client, at);
  } catch (err) {
    if (err instanceof ApiError || (err as NodeJS.ErrnoException).code) throw failed(`look up ${at.shown}`, at.drive, err);
    throw err;
  }
}

/** The drive-relative path of a place on the drive, quoted for messages ("/" for the root). */
export function quoted(names: string[]): string {
  return `"${names.length ? names.join('/') : '/'}"`;
}

/**
 * Where a node is now, relative to the drive's root ("Projects/a.txt"), climbing its folders
 * (its name alone, or as far up as could be read, when the way up cannot be read).
 */
export async function pathNow(client: Pick<StratusClient, 'node'>, node: NodeInfo): Promise<string> {
  const names = [node.name];
  try {
    for (let id = node.parent_id, hops = 0; id !== null && hops < 1000; hops++) {
      const up = await client.node(id);
      if (up.parent_id === null) break;
      names.unshift(up.name);
      id = up.parent_id;
    }
  } catch {
    // as far as it could be read
  }
  return node.parent_id === null ? '' : names.join('/');
}
