import { Command } from 'commander';
import bytes from 'bytes';
import { resolve } from 'node:path';
import { driveStatus, runningDrives } from '../mount/control/client.js';
import type { MountStatus } from '../mount/status.js';
import { formatPathStatus, pathStatus, statusTarget } from './path-status.js';

function ago(iso: string | null, now: number): string {
  if (iso === null) return 'never';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  const when = s < 60 ? `${s} s ago` : s < 3600 ? `${Math.floor(s / 60)} min ago` : `${Math.floor(s / 3600)} h ago`;
  return `${iso} (${when})`;
}

export function formatStatus(s: MountStatus, now = Date.now()): string {
  const link = s.connected
    ? `connected to ${s.server}`
    : s.online
      ? `reachable at ${s.server}, change notifications not connected`
      : `not connected to ${s.server}${s.lastError ? ` (${s.lastError})` : ''}`;
  return [
    `${s.mountpoint}: ${link}`,
    `  user ${s.user}, device ${s.device}, pid ${s.pid}${s.startedOffline ? ', started offline' : ''}`,
    `  pending: ${s.pendingCommits} commit(s), ${bytes.format(s.pendingBytes) ?? `${s.pendingBytes}B`}`,
    `  last sync ${ago(s.lastSyncAt, now)}`,
  ].join('\n');
}

export function statusCommand(): Command {
  return new Command('status')
    .description('show whether a drive is connected to its server, what it has pending and when it last synced (every mounted drive without MOUNTPOINT)')
    .argument('[mountpoint]', 'where the drive is mounted; or a file or folder on a drive: its sync state (synced, pending, uploading, conflict, pinned, cached, online-only; a folder: counts per state)')
    .option('--json', 'print JSON (an object for MOUNTPOINT, else an array) for scripts')
    .action(async (mountpoint: string | undefined, opts: { json?: boolean }) => {
      let statuses: MountStatus[];
      // A file or folder on a drive (not its mountpoint): its sync state.
      const at = mountpoint === undefined ? undefined : await statusTarget(mountpoint);
      if (at) {
        const s = await pathStatus(at);
        process.stdout.write(opts.json ? `${JSON.stringify(s, null, 2)}\n` : formatPathStatus(s));
        return;
      }
      // Asked over each drive's control socket (this user's drives only: mount/control/).
      if (mountpoint !== undefined) statuses = [await driveStatus(resolve(mountpoint))];
      else {
        statuses = await runningDrives();
        if (!statuses.length) throw new Error('no stratus drive is mounted');
      }
      if (opts.json) process.stdout.write(`${JSON.stringify(mountpoint !== undefined ? statuses[0] : statuses, null, 2)}\n`);
      else process.stdout.write(`${statuses.map((s) => formatStatus(s)).join('\n')}\n`);
    });
}
