import { Command, InvalidArgumentError } from 'commander';
import type { Manifest } from '../protocol/types.js';
import { localTime } from './display.js';
import { locateOnDrive } from './drive-path.js';
import { failed, locateWasOnDrive, nodeNow, quoted, TOKEN_HELP, withClient } from './on-drive.js';
import { parsePointInTime } from './point-in-time.js';
import { NotThenError, restoreAt, stepLine, summaryLine, type RestoreAtResult } from './restore-at.js';
import { assertFile } from './versions.js';

/**
 * `stratus restore PATH --version N | --at TIME` (DESIGN §9): an earlier state comes back as new
 * versions (history is never rewritten). `--version`: one file's version N. `--at`: a file or a
 * folder with everything in it as it was at TIME (cli/restore-at.ts); one line per thing done,
 * then a total; anything that could not be done makes the exit non-zero.
 */

function parseVersionNumber(value: string): number {
  if (!/^[1-9][0-9]{0,9}$/.test(value)) throw new InvalidArgumentError(`not a version number: "${value}" (1, 2, 3…: see \`stratus versions PATH\`)`);
  return Number(value);
}

export function restoreCommand(): Command {
  return new Command('restore')
    .description('bring back an earlier version of a file, or a file or folder as it was at a past time, as new versions (history is never rewritten)')
    .argument('<path>', 'a file on a mounted Stratus drive; with --at also a folder (the whole drive: its mountpoint), or a path that is gone since')
    .option('--version <n>', "make version N's content the file's newest version (numbers: `stratus versions PATH`)", parseVersionNumber)
    .option('--at <time>', 'restore PATH as it was at TIME: ISO 8601 in local time (2026-12-01T10:00, 2026-12-01 10:00:30, or with Z / +02:00) or how long ago (30m, 2h, 3d)', (v: string) => parsePointInTime(v))
    .option('--dry-run', 'with --at: print what would be done, change nothing')
    .option('--token <token>', TOKEN_HELP)
    .addHelpText(
      'after',
      `
Examples:
  stratus restore ~/Stratus/report.odt --version 3            # prints the new version's number
  stratus restore ~/Stratus/Projects --at 2026-12-01T10:00    # the folder as it was then
  stratus restore ~/Stratus/Projects --at 2h --dry-run        # what would change, 2 hours back

With --at, for every file and folder that was under PATH at TIME: what is in the trash now comes
back from it; what was renamed or moved since goes back to its name and folder of then, if that
name is free (else it stays where it is, and the command says so); a file whose content changed
gets its content of then as a new version. Nothing made after TIME is deleted or changed. One line
per change, then a total; the exit code is 1 if anything could not be restored (e.g. purged from
the trash, or a version older than the server's retention period).`,
    )
    .action(async (given: string, opts: { version?: number; at?: number; dryRun?: boolean; token?: string }) => {
      if ((opts.version === undefined) === (opts.at === undefined)) throw new Error('give --version N or --at TIME (one of them)');
      if (opts.version !== undefined) {
        if (opts.dryRun) throw new Error('--dry-run goes with --at only');
        await restoreVersion(given, opts.version, opts.token);
      } else await restoreAtTime(given, opts.at!, opts.dryRun === true, opts.token);
    });
}

async function restoreVersion(given: string, version: number, token: string | undefined): Promise<void> {
  const at = await locateOnDrive(given);
  await withClient(at.drive, token, async (client) => {
    const node = await nodeNow(client, at);
    assertFile(node, given);
    const what = quoted(at.names);
    if (node.head_version === version) {
      process.stdout.write(`${what} is at version ${version} already: nothing to do\n`);
      return;
    }
    let made: Manifest;
    try {
      made = await client.restoreVersion(node.id, version);
    } catch (err) {
      throw failed(`restore version ${version} of ${what}`, at.drive, err);
    }
    process.stdout.write(`restored version ${version} of ${what} as version ${made.version}\n`);
  });
}

async function restoreAtTime(given: string, atMs: number, dryRun: boolean, token: string | undefined): Promise<void> {
  const at = await locateWasOnDrive(given);
  const when = localTime(atMs);
  const what = quoted(at.names);
  await withClient(at.drive, token, async (client) => {
    let result: RestoreAtResult;
    try {
      result = await restoreAt(client, { at: atMs, names: at.names, dryRun, onStep: (s) => process.stdout.write(`${stepLine(s, dryRun)}\n`) });
    } catch (err) {
      if (err instanceof NotThenError) throw new Error(`${err.message} at ${when}`);
      throw failed(`restore ${what} as it was at ${when}`, at.drive, err);
    }
    process.stdout.write(`${summaryLine(result, what, when, dryRun)}\n`);
    const n = result.counts.failed;
    if (n > 0) throw new Error(`${n === 1 ? 'one thing' : `${n} things`} under ${what} could not be restored (the lines starting with "${dryRun ? 'cannot' : 'failed'}" say why)`);
  });
}
