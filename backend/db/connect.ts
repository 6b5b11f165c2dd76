import path from 'node:path';
import fs from 'node:fs/promises';
import knexFactory, { type Knex } from 'knex';
import type { Logger } from 'pino';
import { knexLog } from './knex-log.js';
import { migrationSource } from './migrations/index.js';

export type DbClient = 'sqlite3' | 'pg';

/** The Knex configuration for a `--db` URL, or for the SQLite file in the data folder when there is none. */
export function knexConfig(dbUrl: string | undefined, dataDir: string, log?: Logger): Knex.Config {
  if (dbUrl && /^postgres(ql)?:\/\//.test(dbUrl)) {
    return {
      log: knexLog(log),
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
    log: knexLog(log),
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
export async function openDatabase(dbUrl: string | undefined, dataDir: string, log?: Logger): Promise<Knex> {
  const config = knexConfig(dbUrl, dataDir, log);
  if (config.client === 'sqlite3') {
    const filename = (config.connection as { filename: string }).filename;
    await fs.mkdir(path.dirname(filename), { recursive: true, mode: 0o700 });
    // The server's user's only, whatever the umask (SQLite gives its -wal and -shm files the same mode).
    await (await fs.open(filename, 'a', 0o600)).close();
    await fs.chmod(filename, 0o600);
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

/** Why openExistingDatabase refused: there is no database, or it is not one of Stratus. */
export class NoStratusDatabaseError extends Error {
  constructor(
    /** The SQLite file or the PostgreSQL URL (without its password). */
    readonly where: string,
    readonly missing: boolean,
  ) {
    super(missing ? `no Stratus database at ${where}` : `${where} is not a Stratus database`);
  }
}

/** A PostgreSQL URL with its password hidden, for messages. */
export function redactedDbUrl(dbUrl: string): string {
  try {
    const url = new URL(dbUrl);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return dbUrl;
  }
}

/**
 * Opens a metadata database that must be there already, made by `stratus serve` (or another
 * command told to create it), and brings its schema up to date. For the admin commands run next
 * to a server (`stratus user add`, `stratus gc`): run in the wrong folder or with a mistyped
 * --data, openDatabase would make a new empty database there and the user would land in it.
 */
export async function openExistingDatabase(dbUrl: string | undefined, dataDir: string): Promise<Knex> {
  const config = knexConfig(dbUrl, dataDir);
  let where = dbUrl ? redactedDbUrl(dbUrl) : '';
  if (config.client === 'sqlite3') {
    where = (config.connection as { filename: string }).filename;
    const st = await fs.stat(where).catch(() => undefined);
    if (!st) throw new NoStratusDatabaseError(where, true);
    if (!st.isFile()) throw new NoStratusDatabaseError(where, false);
    // Not SQLite at all: refused before the driver logs a connection error of its own.
    const head = Buffer.alloc(16);
    const file = await fs.open(where, 'r');
    const { bytesRead } = await file.read(head, 0, 16, 0).finally(() => file.close());
    if (bytesRead < 16 || head.toString('latin1') !== 'SQLite format 3\0') throw new NoStratusDatabaseError(where, false);
  }
  const db = knexFactory(config);
  try {
    const ours = (await db.schema.hasTable('knex_migrations')) && (await db.schema.hasTable('users'));
    if (!ours) throw new NoStratusDatabaseError(where, false);
    await db.migrate.latest();
  } catch (err) {
    await db.destroy();
    throw err;
  }
  return db;
}
