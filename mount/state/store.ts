import knexFactory, { type Knex } from 'knex';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { BlockRef, NodeKind } from '../../protocol/types.js';

/** A node as the mount knows it (a cached copy of the server's NodeInfo, plus what the mount learned). */
export interface LocalNode {
  id: string;
  parentId: string | null;
  name: string;
  kind: NodeKind;
  headVersion: number;
  size: number;
  mtime: number;
  mode: number;
  /** A folder whose children have been fetched (and are kept fresh). */
  listed: boolean;
  /** A link's target as written (links only). */
  target?: string;
}

/** A closed file waiting to become a version on the server (invariant 5: on disk before `release` returns). */
export interface PendingCommit {
  id: number;
  nodeId: string;
  baseVersion: number;
  /** Staging file holding the bytes to commit; owned by this entry. */
  staging: string;
  size: number;
  mtime: number;
  createdAt: number;
  /**
   * Set while the node exists only on this mount (made offline, id `local:…`): the queue creates it
   * on the server first. A folder's entry has no staging file (`staging` is '').
   */
  create?: PendingCreate;
  /** A metadata change made offline, sent in order with the node's content (no staging file). */
  op?: PendingOp;
}

/** A delete or a rename/move of a node the server has, made while it was unreachable. */
export type PendingOp = { kind: 'delete'; ifVersion?: number; folder?: boolean } | { kind: 'move'; parentId: string; name: string };

/** What the server needs to create a node made offline (the tree's current name and folder win when known). */
export interface PendingCreate {
  parentId: string;
  name: string;
  kind: NodeKind;
  mode: number;
  /** A link's target. */
  target?: string;
}

interface NodeRow {
  id: string;
  parent_id: string | null;
  name: string;
  kind: NodeKind;
  head_version: number;
  size: number;
  mtime: number;
  mode: number;
  listed: number;
  target: string | null;
}

interface PendingRow {
  id: number;
  node_id: string;
  base_version: number;
  staging: string;
  size: number;
  mtime: number;
  created_at: number;
  create_json: string | null;
  op_json: string | null;
}

/**
 * The mount's local state on disk (SQLite in the cache folder): the tree it has seen, the change cursor,
 * and the durable queue of pending commits. sqlite3 runs its work on the libuv pool, so nothing here
 * blocks the FUSE event loop.
 */
export class StateStore {
  private constructor(private readonly db: Knex) {}

  static async open(dir: string): Promise<StateStore> {
    await mkdir(dir, { recursive: true });
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
    if (!(await db.schema.hasTable('nodes'))) {
      await db.schema.createTable('nodes', (t) => {
        t.string('id').primary();
        t.string('parent_id').nullable().index();
        t.string('name').notNullable();
        t.string('kind').notNullable();
        t.integer('head_version').notNullable();
        t.bigInteger('size').notNullable();
        t.bigInteger('mtime').notNullable();
        t.integer('mode').notNullable();
        t.integer('listed').notNullable().defaultTo(0);
        t.text('target').nullable();
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
    if (!(await db.schema.hasTable('pending'))) {
      await db.schema.createTable('pending', (t) => {
        t.increments('id');
        t.string('node_id').notNullable().index();
        t.integer('base_version').notNullable();
        t.text('staging').notNullable();
        t.bigInteger('size').notNullable();
        t.bigInteger('mtime').notNullable();
        t.bigInteger('created_at').notNullable();
        t.text('create_json').nullable();
        t.text('op_json').nullable();
      });
    }
    // A cache folder from before offline creates / operations, and from before links.
    for (const column of ['create_json', 'op_json']) {
      if (!(await db.schema.hasColumn('pending', column))) await db.schema.alterTable('pending', (t) => t.text(column).nullable());
    }
    if (!(await db.schema.hasColumn('nodes', 'target'))) await db.schema.alterTable('nodes', (t) => t.text('target').nullable());
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

  /** Forget every cached node (the server or the user changed under this cache folder). */
  async resetTree(): Promise<void> {
    await this.db.transaction(async (trx) => {
      await trx('nodes').delete();
      await trx('meta').where({ key: 'cursor' }).delete();
    });
  }

  // --- tree ---------------------------------------------------------------------------------

  async loadNodes(): Promise<LocalNode[]> {
    const rows = await this.db('nodes').select<NodeRow[]>('*');
    return rows.map(fromNodeRow);
  }

  /** Upserts and deletes in one transaction (the tree on disk moves from one consistent state to the next). */
  async saveNodes(upserts: LocalNode[], deletes: string[], cursor?: number): Promise<void> {
    await this.db.transaction(async (trx) => {
      for (let i = 0; i < upserts.length; i += 100) {
        await trx('nodes').insert(upserts.slice(i, i + 100).map(toNodeRow)).onConflict('id').merge();
      }
      for (let i = 0; i < deletes.length; i += 500) await trx('nodes').whereIn('id', deletes.slice(i, i + 500)).delete();
      if (cursor !== undefined) await trx('meta').insert({ key: 'cursor', value: String(cursor) }).onConflict('key').merge();
    });
  }

  // --- manifests ----------------------------------------------------------------------------

  async getManifest(nodeId: string, version: number): Promise<BlockRef[] | undefined> {
    const row = await this.db('manifests').where({ node_id: nodeId, version }).first<{ blocks: string } | undefined>();
    return row ? (JSON.parse(row.blocks) as BlockRef[]) : undefined;
  }

  async putManifest(nodeId: string, version: number, blocks: BlockRef[]): Promise<void> {
    await this.db('manifests').insert({ node_id: nodeId, version, blocks: JSON.stringify(blocks) }).onConflict('node_id').merge();
  }

  // --- pending commits ------------------------------------------------------------------------

  async listPending(): Promise<PendingCommit[]> {
    const rows = await this.db('pending').orderBy('id').select<PendingRow[]>('*');
    return rows.map(fromPendingRow);
  }

  /**
   * Queues a commit; in the same transaction, drops the listed older entries it supersedes
   * (rapid re-saves coalesce). Returns the new entry.
   */
  async addPending(entry: Omit<PendingCommit, 'id'>, supersedes: number[] = []): Promise<PendingCommit> {
    return this.db.transaction(async (trx) => {
      if (supersedes.length) await trx('pending').whereIn('id', supersedes).delete();
      const [row] = await trx('pending')
        .insert({
          node_id: entry.nodeId,
          base_version: entry.baseVersion,
          staging: entry.staging,
          size: entry.size,
          mtime: entry.mtime,
          created_at: entry.createdAt,
          create_json: entry.create ? JSON.stringify(entry.create) : null,
          op_json: entry.op ? JSON.stringify(entry.op) : null,
        })
        .returning<{ id: number }[]>('id');
      return { ...entry, id: Number(row!.id) };
    });
  }

  async removePending(id: number): Promise<void> {
    await this.db('pending').where({ id }).delete();
  }

  async updatePending(id: number, fields: { nodeId?: string; baseVersion?: number; mtime?: number; create?: PendingCreate | null; op?: PendingOp }): Promise<void> {
    await this.db('pending')
      .where({ id })
      .update({
        ...(fields.op !== undefined && { op_json: JSON.stringify(fields.op) }),
        ...(fields.create !== undefined && { create_json: fields.create ? JSON.stringify(fields.create) : null }),
        ...(fields.nodeId !== undefined && { node_id: fields.nodeId }),
        ...(fields.baseVersion !== undefined && { base_version: fields.baseVersion }),
        ...(fields.mtime !== undefined && { mtime: fields.mtime }),
      });
  }

  /** Asks SQLite to make everything committed so far durable against a power cut. */
  async sync(): Promise<void> {
    await this.db.raw('PRAGMA wal_checkpoint(FULL)');
  }
}

function fromNodeRow(r: NodeRow): LocalNode {
  return {
    id: r.id,
    parentId: r.parent_id,
    name: r.name,
    kind: r.kind,
    headVersion: Number(r.head_version),
    size: Number(r.size),
    mtime: Number(r.mtime),
    mode: Number(r.mode),
    listed: Number(r.listed) === 1,
    ...(r.target !== null && r.target !== undefined && { target: r.target }),
  };
}

function toNodeRow(n: LocalNode): NodeRow {
  return {
    id: n.id,
    parent_id: n.parentId,
    name: n.name,
    kind: n.kind,
    head_version: n.headVersion,
    size: n.size,
    mtime: n.mtime,
    mode: n.mode,
    listed: n.listed ? 1 : 0,
    target: n.target ?? null,
  };
}

function fromPendingRow(r: PendingRow): PendingCommit {
  return {
    id: Number(r.id),
    nodeId: r.node_id,
    baseVersion: Number(r.base_version),
    staging: r.staging,
    size: Number(r.size),
    mtime: Number(r.mtime),
    createdAt: Number(r.created_at),
    ...(r.create_json && { create: JSON.parse(r.create_json) as PendingCreate }),
    ...(r.op_json && { op: JSON.parse(r.op_json) as PendingOp }),
  };
}
