import type { Knex } from 'knex';
import type { NodeKind } from '../../protocol/types.js';
import type { Op } from '../model/ops.js';

interface OldNode {
  id: string;
  parent_id: string | null;
  name: string;
  kind: NodeKind;
  head_version: number;
  size: number;
  mtime: number;
  mode: number;
  listed: number;
  target?: string | null;
}

interface OldPending {
  id: number;
  node_id: string;
  base_version: number;
  staging: string;
  size: number;
  mtime: number;
  created_at: number;
  create_json?: string | null;
  op_json?: string | null;
}

type OldCreate = { parentId: string; name: string; kind: NodeKind; mode: number; target?: string };
type OldOp = { kind: 'delete'; ifVersion?: number; folder?: boolean } | { kind: 'move'; parentId: string; name: string };

const LOCAL = 'local:';

/**
 * A cache folder from before inode numbers (nodes keyed by server id, offline nodes by `local:…`
 * ids, a `pending` queue): every node gets an inode number (the root 1), and every queued entry
 * becomes the operations it stood for, in its order — nothing queued is lost by the upgrade.
 */
export async function migrateIdsToInodes(db: Knex, createTables: (trx: Knex.Transaction) => Promise<void>): Promise<void> {
  await db.transaction(async (trx) => {
    const old = await trx<OldNode>('nodes').select('*');
    const pending = (await trx.schema.hasTable('pending')) ? await trx<OldPending>('pending').orderBy('id').select('*') : [];
    await trx.schema.renameTable('nodes', 'nodes_before_inodes');
    await createTables(trx);
    const inos = new Map<string, number>();
    let next = 2;
    for (const n of old) inos.set(n.id, n.parent_id === null ? 1 : next++);
    const inoOf = (id: string): number => {
      let ino = inos.get(id);
      if (ino === undefined) {
        ino = next++;
        inos.set(id, ino);
      }
      return ino;
    };
    const rows = old.map((n) => ({
      ino: inos.get(n.id)!,
      sid: n.id.startsWith(LOCAL) ? null : n.id,
      parent: n.parent_id === null ? null : (inos.get(n.parent_id) ?? null),
      name: n.name,
      kind: n.kind,
      head_version: n.head_version,
      size: n.size,
      mtime: n.mtime,
      mode: n.mode,
      listed: n.listed,
      target: n.target ?? null,
      gone: 0,
    }));
    for (let i = 0; i < rows.length; i += 100) await trx('nodes').insert(rows.slice(i, i + 100));
    const ops: { ino: number; body: string; created_at: number }[] = [];
    const add = (op: Op, createdAt: number) => ops.push({ ino: op.ino, body: JSON.stringify(op), created_at: createdAt });
    for (const p of pending) {
      const ino = inoOf(p.node_id);
      if (!old.some((n) => n.id === p.node_id)) {
        // Deleted from the tree while queued: kept as a gone node so its operation can name it.
        await trx('nodes').insert({ ino, sid: p.node_id.startsWith(LOCAL) ? null : p.node_id, parent: null, name: '', kind: 'file', head_version: 0, size: p.size, mtime: p.mtime, mode: 0o644, listed: 0, target: null, gone: 1 });
      }
      const create = p.create_json ? (JSON.parse(p.create_json) as OldCreate) : undefined;
      if (create) {
        add({ kind: 'create', ino, parent: inoOf(create.parentId), name: create.name, nodeKind: create.kind, mode: create.mode, mtime: p.mtime, ...(create.target !== undefined && { target: create.target }) }, p.created_at);
      }
      const op = p.op_json ? (JSON.parse(p.op_json) as OldOp) : undefined;
      if (op?.kind === 'delete') add({ kind: 'delete', ino, ...(op.ifVersion !== undefined && { ifVersion: op.ifVersion }), ...(op.folder && { folder: true }) }, p.created_at);
      else if (op?.kind === 'move') add({ kind: 'move', ino, parent: inoOf(op.parentId), name: op.name }, p.created_at);
      else if (p.staging) add({ kind: 'content', ino, staging: p.staging, size: p.size, mtime: p.mtime, baseVersion: p.base_version }, p.created_at);
    }
    for (const o of ops) await trx('ops').insert(o);
    await trx.schema.dropTable('nodes_before_inodes');
    if (await trx.schema.hasTable('pending')) await trx.schema.dropTable('pending');
  });
}
