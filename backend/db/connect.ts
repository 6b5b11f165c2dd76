import path from 'node:path';
import fs from 'node:fs/promises';
import knexFactory, { type Knex } from 'knex';
import { migrationSource } from './migrations/index.js';

export type DbClient = 'sqlite3' | 'pg';

/** The Knex configuration for a `--db` URL, or for the SQLite file in the data folder when there is none. */
export function knexConfig(dbUrl: string | undefined, dataDir: string): Knex.Config {
  if (dbUrl && /^postgres(ql)?:\/\//.test(dbUrl)) {
    return {
      client: 'pg',
      connection: dbUrl,
      pool: { min: 0, max: 10 },
      migrations: { migrationSource },
    };
  }
  let filename = path.join(dataDir, 'stratus.sqlite');
  if (dbUrl) {
    const match = /^sqlite:(?:\/\/)?(.+)$/.exec(dbUrl);
    if (!match?.[1]) throw new Error(`unsupported --db URL "${dbUrl}": use postgres://… or sqlite:PATH`);
    filename = match[1];
  }
  return {
    client: 'sqlite3',
    connection: { filename },
    useNullAsDefault: true,
    // One connection: SQLite has a single writer, and knex then queues transactions instead of failing with SQLITE_BUSY.
    pool: {
      min: 1,
      max: 1,
      afterCreate(conn: { exec(sql: string, cb: (err: Error | null) => void): void }, done: (err: Error | null, conn: unknown) => void) {
        conn.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;', (err) => done(err, conn));
      },
    },
    migrations: { migrationSource },
  };
}

export function dbClient(db: Knex): DbClient {
  return db.client.config.client === 'pg' ? 'pg' : 'sqlite3';
}

/**
 * Runs `fn` in a transaction that will write. On SQLite it takes the write lock first (a no-op
 * UPDATE, as BEGIN IMMEDIATE would): a transaction that reads and only then writes fails at once
 * with SQLITE_BUSY when another process wrote meanwhile (`stratus gc` next to a server), where a
 * write taken first waits its turn (busy_timeout). One connection per process orders the rest.
 */
export function writeTransaction<T>(db: Knex, fn: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
  return db.transaction(async (trx) => {
    if (dbClient(db) === 'sqlite3') await trx.raw('UPDATE users SET id = id WHERE 0');
    return fn(trx);
  });
}

/** Opens the metadata database and brings its schema up to date. */
export async function openDatabase(dbUrl: string | undefined, dataDir: string): Promise<Knex> {
  const config = knexConfig(dbUrl, dataDir);
  if (config.client === 'sqlite3') {
    const filename = (config.connection as { filename: string }).filename;
    await fs.mkdir(path.dirname(filename), { recursive: true });
  }
  const db = knexFactory(config);
  try {
    await db.migrate.latest();
  } catch (err) {
    await db.destroy();
    throw err;
  }
  return db;
}
