import path from 'node:path';
import { Command } from 'commander';
import { openDatabase } from '../backend/db/connect.js';
import { addDevice, createUser } from '../backend/services/accounts.js';

interface DbOptions {
  data: string;
  db?: string;
  device: string;
}

async function withDb<T>(opts: DbOptions, fn: (db: Awaited<ReturnType<typeof openDatabase>>) => Promise<T>): Promise<T> {
  const db = await openDatabase(opts.db, path.resolve(opts.data));
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
      .action(async (name: string, opts: DbOptions) => {
        const created = await withDb(opts, (db) => createUser(db, name, opts.device));
        process.stdout.write(`created user ${name} (id ${created.userId}) with device "${created.device.name}"\n${created.token}\n`);
      }),
  );
  user.addCommand(
    dbOptions(new Command('token'))
      .description("create another device token for an existing user (a second machine); prints it as the last line")
      .argument('<name>', 'user name')
      .action(async (name: string, opts: DbOptions) => {
        const created = await withDb(opts, (db) => addDevice(db, name, opts.device));
        process.stdout.write(`new device "${created.device.name}" for user ${name}\n${created.token}\n`);
      }),
  );
  return user;
}
