import { Command } from 'commander';
import type { Knex } from 'knex';
import { addDevice, createUser } from '../backend/services/accounts.js';
import { openServerDatabase } from './server-db.js';

interface DbOptions {
  data: string;
  db?: string;
  device: string;
  /** `user add --create`: make the database if there is none. */
  create?: boolean;
}

async function withDb<T>(opts: DbOptions, command: string, fn: (db: Knex) => Promise<T>): Promise<T> {
  const db = await openServerDatabase(opts, command);
  try {
    return await fn(db);
  } finally {
    await db.destroy();
  }
}

export function userCommand(): Command {
  const user = new Command('user').description('manage users and their device tokens');
  const dbOptions = (cmd: Command) =>
    cmd
      .option('--data <dir>', 'data folder of the embedded SQLite database', './stratus-data')
      .option('--db <url>', 'metadata database: postgres://… (default: SQLite in the data folder)')
      .option('--device <name>', 'name of the device the token is for', 'first device');

  user.addCommand(
    dbOptions(new Command('add'))
      .description('create a user; prints the new device token as the last line')
      .argument('<name>', 'user name: letters, digits, ".", "_", "@", "-"')
      .option('--create', "make the database if there is none yet (without it, a missing database is an error: run in the wrong folder, a new empty one would be made there); `stratus serve` makes it too")
      .action(async (name: string, opts: DbOptions) => {
        const created = await withDb(opts, 'user add', (db) => createUser(db, name, opts.device));
        process.stdout.write(`created user ${name} (id ${created.userId}) with device "${created.device.name}"\n${created.token}\n`);
      }),
  );
  user.addCommand(
    dbOptions(new Command('token'))
      .description("create another device token for an existing user (a second machine); prints it as the last line")
      .argument('<name>', 'user name')
      .action(async (name: string, opts: DbOptions) => {
        const created = await withDb(opts, 'user token', (db) => addDevice(db, name, opts.device));
        process.stdout.write(`new device "${created.device.name}" for user ${name}\n${created.token}\n`);
      }),
  );
  return user;
}
