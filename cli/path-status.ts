import { askDrive } from '../mount/control/client.js';
import type { NodeStatus } from '../mount/sync-state/sync-state.js';
import { humanSize } from './display.js';
import { dirname, resolve } from 'node:path';
import { locateOnDrive, type DrivePath } from './drive-path.js';

/**
 * `stratus status PATH` for a file or folder on a drive: its sync state (the words of
 * `user.stratus.state`, mount/sync-state/sync-state.ts) asked of the drive over its control socket.
 */

/**
 * What `stratus status ARG` is about: a file or folder on a drive (not its mountpoint), or
 * undefined (a mountpoint, or a folder on no drive: the drive's status, as before). A path that
 * does not exist in a folder of a drive is "no such file or folder".
 */
export async function statusTarget(given: string): Promise<DrivePath | undefined> {
  try {
    const at = await locateOnDrive(given);
    return at.names.length > 0 ? at : undefined;
  } catch (err) {
    const parent = dirname(resolve(given));
    if (parent !== resolve(given) && (await locateOnDrive(parent).then(() => true, () => false))) throw err;
    return undefined;
  }
}

export async function pathStatus(at: DrivePath): Promise<NodeStatus> {
  const status = (await askDrive(at.drive.mountpoint, 'path-status', { path: `/${at.names.join('/')}` }, { timeoutMs: 60_000 })) as NodeStatus;
  return { ...status, path: at.shown };
}

export function formatPathStatus(s: NodeStatus): string {
  if (s.kind !== 'dir') {
    const what = s.kind === 'link' ? 'link' : `${humanSize(s.size)}, version ${s.version}, ${humanSize(s.cachedBytes)} cached${s.pinned ? ', pinned' : ''}`;
    return `${s.path}: ${s.state}\n  ${what}\n`;
  }
  const counts = Object.entries(s.states)
    .map(([state, n]) => `${n} ${state}`)
    .join(', ');
  const lines = [
    `${s.path}: ${s.state} (folder${s.pinned && s.state !== 'pinned' ? ', pinned' : ''})`,
    `  ${s.files} file(s)${counts ? `: ${counts}` : ''}`,
    `  ${humanSize(s.size)}, ${humanSize(s.cachedBytes)} cached, ${s.pendingBytes > 0 ? `${humanSize(s.pendingBytes)} pending` : 'nothing pending'}`,
  ];
  if (s.unlisted > 0) lines.push(`  ${s.unlisted} folder(s) under it not listed on this drive yet (not counted)`);
  return `${lines.join('\n')}\n`;
}
