import { Command } from 'commander';
import bytes from 'bytes';
import { resolve } from 'node:path';
import { alive, readStatus, registeredMounts, registeredPid, type MountStatus } from '../mount/registry.js';

/** The status of the drive at `mountpoint`, or why there is none. */
async function statusOf(mountpoint: string): Promise<MountStatus> {
  const pid = await registeredPid(mountpoint);
  if (pid === undefined) throw new Error(`no stratus drive is mounted at ${mountpoint}`);
  if (!alive(pid)) throw new Error(`no stratus drive is mounted at ${mountpoint} (stale entry of pid ${pid}, which is gone)`);
  const status = await readStatus(mountpoint);
  if (!status || status.pid !== pid) throw new Error(`the drive at ${mountpoint} (pid ${pid}) has not written its status yet`);
  return status;
}

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
    .argument('[mountpoint]', 'where the drive is mounted')
    .option('--json', 'print JSON (an object for MOUNTPOINT, else an array) for scripts')
    .action(async (mountpoint: string | undefined, opts: { json?: boolean }) => {
      let statuses: MountStatus[];
      if (mountpoint !== undefined) statuses = [await statusOf(resolve(mountpoint))];
      else {
        statuses = [];
        for (const mp of await registeredMounts()) {
          const s = await statusOf(mp).catch(() => undefined);
          if (s) statuses.push(s);
        }
        if (!statuses.length) throw new Error('no stratus drive is mounted');
      }
      if (opts.json) process.stdout.write(`${JSON.stringify(mountpoint !== undefined ? statuses[0] : statuses, null, 2)}\n`);
      else process.stdout.write(`${statuses.map((s) => formatStatus(s)).join('\n')}\n`);
    });
}
