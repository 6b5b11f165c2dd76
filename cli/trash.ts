import path from 'node:path';
import { Command } from 'commander';
import type { NodeInfo, TrashItem } from '../protocol/types.js';
import { localTime, plural } from './display.js';
import { defaultDrive, type Drive, type DrivePath } from './drive-path.js';
import { failed, locateWasOnDrive, pathNow, TOKEN_HELP, withClient } from './on-drive.js';
import { allTrash, itemsAt, itemsUnder, itemSummary, namesOf, trashPath, trashTable, wentWith } from './trash-items.js';

/**
 * `stratus trash [list] [PATH]`, `stratus trash restore PATH [--id ID]`, `stratus trash empty
 * --yes` (DESIGN §3, §9): what was deleted on the drives of the user, by the path where it was.
 * A deleted folder is one item with everything that was in it, and comes back whole.
 */

/** The drive a command without PATH acts on, or the one holding PATH, and the names of PATH (gone or not). */
async function placeOf(given: string | undefined): Promise<{ drive: Drive; at?: DrivePath }> {
  if (given === undefined) return { drive: await defaultDrive() };
  const at = await locateWasOnDrive(given);
  return { drive: at.drive, at };
}

/** A place of the drive as a local path ("/home/me/Stratus/Projects"). */
function local(drive: Drive, names: string[]): string {
  return path.join(drive.mountpoint, ...names);
}

function listCommand(): Command {
  return new Command('list')
    .description('list what you can restore, newest first: name, the folder it was in, size, when and by which device it was deleted, id')
    .argument('[path]', 'only what was at or under this path (default: all of the trash of the drive holding the current folder, else of the only one mounted)')
    .option('--json', 'print the items as a JSON array (newest first) for scripts')
    .option('--token <token>', TOKEN_HELP)
    .action(async (given: string | undefined, opts: { json?: boolean; token?: string }) => {
      const { drive, at } = await placeOf(given);
      await withClient(drive, opts.token, async (client) => {
        let items: TrashItem[];
        try {
          items = await allTrash(client);
        } catch (err) {
          throw failed('list the trash', drive, err);
        }
        if (at) items = itemsUnder(items, at.names);
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(items, null, 2)}\n`);
          return;
        }
        const scope = at?.names.length ? ` at or under "${trashPath(at.names)}"` : '';
        if (!items.length) process.stdout.write(`nothing in the trash${scope}\n`);
        else process.stdout.write(`${plural(items.length, 'item')} in the trash${scope}, newest first:\n${trashTable(items)}`);
      });
    });
}

function restoreCommand(): Command {
  return new Command('restore')
    .description('bring back what was deleted at PATH (a folder with everything that was in it), to where it was')
    .argument('<path>', 'where it was on a mounted drive, e.g. ~/Stratus/Projects after `rm -r ~/Stratus/Projects`')
    .option('--id <id>', 'which item, when several were at PATH (ids: `stratus trash list PATH`; default: the newest)')
    .option('--token <token>', TOKEN_HELP)
    .addHelpText(
      'after',
      `
Examples:
  stratus trash restore ~/Stratus/Projects
  stratus trash restore ~/Stratus/notes.txt --id 8f0c2a…

The item goes back to the folder it was in. If that name is taken now, the server gives it
another name; the command prints where it went.`,
    )
    .action(async (given: string, opts: { id?: string; token?: string }) => {
      const at = await locateWasOnDrive(given);
      const where = trashPath(at.names);
      await withClient(at.drive, opts.token, async (client) => {
        let items: TrashItem[];
        try {
          items = await allTrash(client);
        } catch (err) {
          throw failed('list the trash', at.drive, err);
        }
        const matching = itemsAt(items, at.names);
        let item: TrashItem | undefined;
        if (opts.id !== undefined) {
          item = items.find((i) => i.id === opts.id);
          if (!item) throw new Error(`nothing in the trash has id ${opts.id} (see \`stratus trash list\`)`);
          if (at.names.length && !matching.includes(item)) throw new Error(`item ${opts.id} was at "${trashPath(namesOf(item.path))}", not at "${where}"`);
        } else {
          item = matching[0];
          if (!item) {
            const folder = wentWith(items, at.names);
            if (folder) {
              throw new Error(
                `nothing in the trash was at "${where}"; it went with the folder "${trashPath(namesOf(folder.path))}" (deleted ${localTime(folder.deleted_at)}): stratus trash restore ${local(at.drive, namesOf(folder.path))}`,
              );
            }
            throw new Error(`nothing in the trash was at "${where}" (see \`stratus trash list\`)`);
          }
        }
        let back: NodeInfo;
        try {
          back = await client.restore(item.id);
        } catch (err) {
          throw failed(`restore "${where}"`, at.drive, err);
        }
        const now = namesOf(await pathNow(client, back));
        const renamed = now.join('/') === namesOf(item.path).join('/') ? '' : ` ("${trashPath(namesOf(item.path))}" is taken)`;
        process.stdout.write(`restored "${trashPath(namesOf(item.path))}" (${itemSummary(item)}, deleted ${localTime(item.deleted_at)}) to ${local(at.drive, now)}${renamed}\n`);
        const others = matching.filter((i) => i !== item).length;
        if (others > 0) {
          process.stderr.write(`stratus: ${plural(others, 'other item')} ${others === 1 ? 'was' : 'were'} at "${where}" too: \`stratus trash list ${given}\` shows them; restore one with --id ID\n`);
        }
      });
    });
}

function emptyCommand(): Command {
  return new Command('empty')
    .description('purge everything in your trash for good, now (needs --yes; asks no question)')
    .argument('[path]', 'a path on the drive whose trash to empty (default: the drive holding the current folder, else the only one mounted)')
    .option('--yes', 'really purge: without it the command refuses and changes nothing')
    .option('--token <token>', TOKEN_HELP)
    .addHelpText(
      'after',
      `
What is purged cannot be restored, by any means. Items that the trash lists from folders
shared with you are their owners' and stay. Without emptying, the server purges items older
than its retention period (30 days by default).`,
    )
    .action(async (given: string | undefined, opts: { yes?: boolean; token?: string }) => {
      if (!opts.yes) throw new Error('trash empty purges everything in your trash for good: run it with --yes (`stratus trash list` shows what is there)');
      const { drive } = await placeOf(given);
      await withClient(drive, opts.token, async (client) => {
        let listed: TrashItem[];
        let purged: number;
        try {
          listed = await allTrash(client);
          ({ purged } = await client.emptyTrash());
        } catch (err) {
          throw failed('empty the trash', drive, err);
        }
        const stay = listed.length - purged;
        process.stdout.write(
          `emptied the trash: ${plural(purged, 'item')} purged for good${stay > 0 ? `; ${plural(stay, 'item')} of folders shared with you stay (their owners')` : ''}\n`,
        );
      });
    });
}

export function trashCommand(): Command {
  return new Command('trash')
    .description('what was deleted from your drives: list it, restore it by the path where it was, or empty the trash')
    .addCommand(listCommand(), { isDefault: true })
    .addCommand(restoreCommand())
    .addCommand(emptyCommand())
    .addHelpText(
      'after',
      `
Examples:
  stratus trash                                # = stratus trash list
  stratus trash list ~/Stratus/Projects         # what was deleted there
  stratus trash restore ~/Stratus/Projects      # after rm -r ~/Stratus/Projects: the whole folder back
  stratus trash empty --yes

A deleted file or folder stays in the trash for the server's retention period (30 days by
default). To go back to an earlier state of files that still exist, see \`stratus restore\`.`,
    );
}
