import path from 'node:path';
import type { Knex } from 'knex';
import { NoStratusDatabaseError, openDatabase, openExistingDatabase } from '../backend/db/connect.js';

/**
 * The metadata database of a server for the admin commands (`stratus user add`, `user token`,
 * `gc`): it must exist already (`stratus serve` makes it), so a command run in the wrong folder
 * or with a mistyped --data fails with one line instead of making a new empty database there.
 * `create` (`stratus user add --create`) makes it on purpose.
 */
export async function openServerDatabase(opts: { data: string; db?: string; create?: boolean }, command: string): Promise<Knex> {
  const dataDir = path.resolve(opts.data);
  if (opts.create) return openDatabase(opts.db, dataDir);
  try {
    return await openExistingDatabase(opts.db, dataDir);
  } catch (err) {
    if (!(err instanceof NoStratusDatabaseError)) throw err;
    const give = opts.db ? 'check --db (the URL your server uses)' : 'give the --data folder (or --db URL) of your server';
    const create = command === 'user add' ? `, or add --create to make a new one${opts.db ? '' : ` in ${dataDir}`}` : '';
    if (err.missing) throw new Error(`no Stratus database in ${dataDir} (${err.where} does not exist): ${give}, or run \`stratus serve --data ${dataDir}\` once first${create}`);
    throw new Error(`${err.where} is not a Stratus database: ${give}`);
  }
}
