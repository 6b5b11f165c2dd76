import { Command } from 'commander';
import type { StratusClient } from '../protocol/client.js';
import type { NodeInfo, VersionInfo } from '../protocol/types.js';
import { humanSize, localTime, plural, table } from './display.js';
import { locateOnDrive } from './drive-path.js';
import { failed, nodeNow, quoted, TOKEN_HELP, withClient } from './on-drive.js';

/**
 * `stratus versions PATH` (DESIGN §9): every version of a file on a mounted drive, newest first
 * (as Dropbox shows them; `git log` order): number, when it was saved (local time), size and the
 * device that saved it. `--json` gives the API's VersionInfo objects for scripts.
 */

/** Every version of a file, newest first, following the server's pages. */
export async function allVersions(client: Pick<StratusClient, 'versions'>, id: string): Promise<VersionInfo[]> {
  const out: VersionInfo[] = [];
  let before: number | undefined;
  for (;;) {
    const page = await client.versions(id, { before });
    out.push(...page.versions);
    if (page.next === null || page.next === before) return out.sort((a, b) => b.version - a.version);
    before = page.next;
  }
}

/** Who saved a version: the device's name, else its id, else "-". */
export function deviceOf(v: VersionInfo): string {
  return v.device_name ?? v.device_id ?? '-';
}

/** The versions as a table (the head marked "current"). */
export function versionsTable(versions: VersionInfo[], head: number): string {
  return table(
    ['VERSION', 'SAVED', 'SIZE', 'DEVICE'],
    versions.map((v) => [v.version === head ? `${v.version} (current)` : String(v.version), localTime(v.committed_at), humanSize(v.size), deviceOf(v)]),
    [2],
  );
}

/** Refuses, in one line, what has no versions (folders, symbolic links). */
export function assertFile(node: NodeInfo, shown: string): void {
  if (node.kind === 'dir') throw new Error(`${shown} is a folder: only files have versions (restore a folder with --at TIME)`);
  if (node.kind === 'link') throw new Error(`${shown} is a symbolic link: only files have versions`);
}

export function versionsCommand(): Command {
  return new Command('versions')
    .description('list every version of a file on your drive, newest first: number, when it was saved, size, the device that saved it')
    .argument('<path>', 'a file on a mounted Stratus drive')
    .option('--json', 'print {path, id, head_version, versions} as JSON (versions newest first) for scripts')
    .option('--token <token>', TOKEN_HELP)
    .addHelpText(
      'after',
      `
Examples:
  stratus versions ~/Stratus/report.odt
  stratus restore ~/Stratus/report.odt --version 3   # its content of version 3 as a new version

Every save (close of a written file) is a version. Versions older than the server's retention
period (30 days by default) are purged, except the current one.`,
    )
    .action(async (given: string, opts: { json?: boolean; token?: string }) => {
      const at = await locateOnDrive(given);
      await withClient(at.drive, opts.token, async (client) => {
        const node = await nodeNow(client, at);
        assertFile(node, given);
        let versions: VersionInfo[];
        try {
          versions = await allVersions(client, node.id);
        } catch (err) {
          throw failed(`list the versions of ${quoted(at.names)}`, at.drive, err);
        }
        if (opts.json) {
          process.stdout.write(`${JSON.stringify({ path: at.names.join('/'), id: node.id, head_version: node.head_version, versions }, null, 2)}\n`);
          return;
        }
        const head = versions[0]?.version ?? node.head_version;
        process.stdout.write(`${quoted(at.names)}: ${versions.length ? `${plural(versions.length, 'version')}, newest first` : 'no versions (never saved)'}\n${versions.length ? versionsTable(versions, head) : ''}`);
      });
    });
}
