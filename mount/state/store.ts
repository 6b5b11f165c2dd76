import knexFactory, { type Knex } from 'knex';
import { chmod, mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import type { BlockRef, NodeKind } from '../../protocol/types.js';
import type { LocalNode } from '../model/local-node.js';
import type { LoggedOp, Op } from '../model/ops.js';
import { migrateIdsToInodes } from './inode-migration.js';

/** A node row: live, or `gone` — removed here but still named by queued operations (which need its server id). */
export type StoredNode = LocalNode & { gone?: boolean };

/** One local transaction: the tree rows it changes, the operations it logs, drops or updates, the cursor. */
export interface StateChange {
  upserts?: StoredNode[];
  deletes?: number[];
  addOps?: Omit<LoggedOp, 'seq'>[];
  removeOps?: number[];
  updateOps?: LoggedOp[];
  /** The change feed's cursor (opaque; a number from a server before namespaces, which answers it with a full resync). */
  cursor?: string;
}

interface NodeRow {
  ino: number;
  sid: string | null;
  parent: number | null;
  name: string;
  kind: NodeKind;
  head_version: number;
  size: number;
  mtime: number;
  mode: number;
  listed: number;
  target: string | null;
  gone: number;
  share: number;
}

interface OpRow {
  seq: number;
  ino: number;
  body: string;
  created_at: number;
}

/**
 * The mount's local state on disk (SQLite in the cache folder): the tree it has seen, the change
 * cursor, the durable operation log, and the manifests it read. A local change and its logged
 * operation are one transaction (`write`). sqlite3 runs its work on the libuv pool, so nothing here
 * blocks the FUSE event loop.
 */
export class StateStore {
  private constructor(private readonly db: Knex) {}

  static async open(dir: string): Promise<StateStore> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // This user's only, whatever the umask (SQLite gives its -wal and -shm files the same mode).
    const file = join(dir, 'state.db');
    await (await open(file, 'a', 0o600)).close();
    await chmod(file, 0o600);
    const db = knexFactory({
      client: 'sqlite3',
      connection: { filename: join(dir, 'state.db') },
      useNullAsDefault: true,
      pool: {
        min: 1,
        max: 1,
        afterCreate: (conn: { exec(sql: string, cb: (err: Error | null) => void): void }, done: (err: Error | null, conn: unknown) => void) => {
          // WAL + synchronous=NORMAL: a committed transaction survives a crash of the process (it is in the OS);
          // fsync() on a file asks for power-cut durability explicitly (see `sync`).
          conn.exec('PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF;', (err) => done(err, conn));
        },
      },
    });
    const store = new StateStore(db);
    await store.migrate();
    return store;
  }

  private async migrate(): Promise<void> {
    const { db } = this;
    // A cache folder from before inode numbers: its tree and queue carry over (migration file).
    if ((await db.schema.hasTable('nodes')) && !(await db.schema.hasColumn('nodes', 'ino'))) await migrateIdsToInodes(db, (trx) => this.createTables(trx));
    await this.createTables(db);
  }

  private async createTables(db: Knex | Knex.Transaction): Promise<void> {
    if (!(await db.schema.hasTable('nodes'))) {
      await db.schema.createTable('nodes', (t) => {
        t.integer('ino').primary();
        t.string('sid').nullable().unique();
        t.integer('parent').nullable().index();
        t.string('name').notNullable();
        t.string('kind').notNullable();
        t.integer('head_version').notNullable();
        t.bigInteger('size').notNullable();
        t.bigInteger('mtime').notNullable();
        t.integer('mode').notNullable();
        t.integer('listed').notNullable().defaultTo(0);
        t.text('target').nullable();
        t.integer('gone').notNullable().defaultTo(0);
        t.integer('share').notNullable().defaultTo(0);
      });
    }
    // Shares (read-only nodes, share entries): a cache folder from before them gains the column.
    if (!(await db.schema.hasColumn('nodes', 'share'))) {
      await db.schema.alterTable('nodes', (t) => {
        t.integer('share').notNullable().defaultTo(0);
      });
    }
    if (!(await db.schema.hasTable('meta'))) {
      await db.schema.createTable('meta', (t) => {
        t.string('key').primary();
        t.text('value').notNullable();
      });
    }
    if (!(await db.schema.hasTable('manifests'))) {
      // The last manifest read of each file: a mount restarted offline still opens what it cached.
      await db.schema.createTable('manifests', (t) => {
        t.string('node_id').primary();
        t.integer('version').notNullable();
        t.text('blocks').notNullable();
      });
    }
    if (!(await db.schema.hasTable('ops'))) {
      await db.schema.createTable('ops', (t) => {
        t.increments('seq');
        t.integer('ino').notNullable().index();
        t.text('body').notNullable();
        t.bigInteger('created_at').notNullable();
      });
    }
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }

  // --- meta ---------------------------------------------------------------------------------

  async getMeta(key: string): Promise<string | undefined> {
    const row = await this.db('meta').where({ key }).first<{ value: string } | undefined>();
    return row?.value;
  }

  async setMeta(key: string, value: string): Promise<void> {
    await this.db('meta').insert({ key, value }).onConflict('key').merge();
  }

  /** Forget every cached node not named by a queued operation (the server or the user changed under this cache folder). */
  async resetTree(): Promise<void> {
    await this.db.transaction(async (trx) => {
      await trx('nodes').whereNotIn('ino', trx('ops').select('ino')).delete();
      await trx('nodes').update({ gone: 1 });
      await trx('meta').where({ key: 'cursor' }).delete();
    });
  }

  // --- tree and log -------------------------------------------------------------------------

  async loadNodes(): Promise<StoredNode[]> {
    const rows = await this.db('nodes').select<NodeRow[]>('*');
    return rows.map(fromNodeRow);
  }

  async loadOps(): Promise<LoggedOp[]> {
    const rows = await this.db('ops').orderBy('seq').select<OpRow[]>('*');
    return rows.map((r) => ({ seq: Number(r.seq), op: JSON.parse(r.body) as Op, createdAt: Number(r.created_at) }));
  }

  /** Applies one change in one transaction (the state on disk moves from one consistent state to the next); returns the seqs of the ops added. */
  async write(change: StateChange): Promise<number[]> {
    return this.db.transaction(async (trx) => {
      const upserts = change.upserts ?? [];
      const deletes = change.deletes ?? [];
      for (let i = 0; i < deletes.length; i += 500) await trx('nodes').whereIn('ino', deletes.slice(i, i + 500)).delete();
      // A server id moves between rows (a replace hands the replaced node's id to its successor): free it first.
      const sids = upserts.map((n) => n.sid).filter((s): s is string => s !== null);
      for (let i = 0; i < sids.length; i += 500) {
        await trx('nodes')
          .whereIn('sid', sids.slice(i, i + 500))
          .whereNotIn(
            'ino',
            upserts.map((n) => n.ino),
          )
          .update({ sid: null });
      }
      for (let i = 0; i < upserts.length; i += 100) await trx('nodes').insert(upserts.slice(i, i + 100).map(toNodeRow)).onConflict('ino').merge();
      const removeOps = change.removeOps ?? [];
      for (let i = 0; i < removeOps.length; i += 500) await trx('ops').whereIn('seq', removeOps.slice(i, i + 500)).delete();
      for (const u of change.updateOps ?? []) await trx('ops').where({ seq: u.seq }).update({ body: JSON.stringify(u.op) });
      const seqs: number[] = [];
      for (const a of change.addOps ?? []) {
        const [row] = await trx('ops').insert({ ino: a.op.ino, body: JSON.stringify(a.op), created_at: a.createdAt }).returning<{ seq: number }[]>('seq');
        seqs.push(Number(row!.seq));
      }
      if (change.cursor !== undefined) await trx('meta').insert({ key: 'cursor', value: String(change.cursor) }).onConflict('key').merge();
      return seqs;
    });
  }

  // --- manifests ----------------------------------------------------------------------------

  async getManifest(sid: string, version: number): Promise<BlockRef[] | undefined> {
    const row = await this.db('manifests').where({ node_id: sid, version }).first<{ blocks: string } | undefined>();
    return row ? (JSON.parse(row.blocks) as BlockRef[]) : undefined;
  }

  async putManifest(sid: string, version: number, blocks: BlockRef[]): Promise<void> {
    await this.db('manifests').insert({ node_id: sid, version, blocks: JSON.stringify(blocks) }).onConflict('node_id').merge();
  }

  /** Asks SQLite to make everything committed so far durable against a power cut. */
  async sync(): Promise<void> {
    await this.db.raw('PRAGMA wal_checkpoint(FULL)');
  }
}

/** Bits of the `share` column. */
const SHARE_READ_ONLY = 1;
const SHARE_ENTRY = 2;

function fromNodeRow(r: NodeRow): StoredNode {
  return {
    ino: Number(r.ino),
    sid: r.sid,
    parent: r.parent === null ? null : Number(r.parent),
    name: r.name,
    kind: r.kind,
    headVersion: Number(r.head_version),
    size: Number(r.size),
    mtime: Number(r.mtime),
    mode: Number(r.mode),
    listed: Number(r.listed) === 1,
    ...(r.target !== null && r.target !== undefined && { target: r.target }),
    ...(Number(r.gone) === 1 && { gone: true }),
    ...((Number(r.share) & SHARE_READ_ONLY) !== 0 && { readOnly: true }),
    ...((Number(r.share) & SHARE_ENTRY) !== 0 && { entry: true }),
  };
}

function toNodeRow(n: StoredNode): NodeRow {
  return {
    ino: n.ino,
    sid: n.sid,
    parent: n.parent,
    name: n.name,
    kind: n.kind,
    head_version: n.headVersion,
    size: n.size,
    mtime: n.mtime,
    mode: n.mode,
    listed: n.listed ? 1 : 0,
    target: n.target ?? null,
    gone: n.gone ? 1 : 0,
    share: (n.readOnly ? SHARE_READ_ONLY : 0) | (n.entry ? SHARE_ENTRY : 0),
  };
}
