import type { Knex } from 'knex';
import { writeTransaction } from '../db/connect.js';
import { num } from '../db/rows.js';
import { journal, lockNamespaces, mutate } from '../services/journal.js';

export interface PurgeReport {
  /** Trash items purged (each with its subtree). */
  items: number;
  /** Nodes purged (items and everything under them). */
  nodes: number;
  /** Versions purged (of items, and old versions of live files). */
  versions: number;
}

/** Trash items and old versions purged per transaction. */
const BATCH = 200;

/**
 * Retention (DESIGN §3): trash items deleted before `cutoff`, and versions that stopped being the
 * head before `cutoff` (the version after them was committed before it; the head of a file is
 * kept forever), are purged. Their blocks become garbage for the GC.
 */
export async function purgeExpired(db: Knex, cutoff: number): Promise<PurgeReport> {
  const report: PurgeReport = { items: 0, nodes: 0, versions: 0 };
  for (;;) {
    const items: Array<{ id: unknown }> = await db('nodes').whereNotNull('deleted_at').whereNull('purged_at').whereNull('trashed_with').where('deleted_at', '<', cutoff).limit(BATCH).select('id');
    if (items.length === 0) break;
    add(report, await purgeItems(db, items.map((r) => String(r.id))));
  }
  report.versions += await purgeOldVersions(db, cutoff);
  return report;
}

/**
 * Purges trash items now, each with everything under it: their versions and journal rows go, and
 * their node rows stay as tombstones (`purged_at`, name cleared) so a cursor older than this sees
 * the item gone (one journal row for it). Items already purged or back from the trash are skipped.
 */
export async function purgeItems(db: Knex, ids: string[]): Promise<PurgeReport> {
  const report: PurgeReport = { items: 0, nodes: 0, versions: 0 };
  for (const id of ids) {
    await mutate(db, async (trx) => {
      const item: Record<string, unknown> | undefined = await trx('nodes').where({ id }).whereNotNull('deleted_at').whereNull('purged_at').first();
      if (!item) return;
      await lockNamespaces(trx, [num(item.ns_id)]);
      const subtree = await subtreeIds(trx, id);
      const now = Date.now();
      for (let i = 0; i < subtree.length; i += 500) {
        const batch = subtree.slice(i, i + 500);
        await trx('version_blocks').whereIn('node_id', batch).delete();
        report.versions += await trx('versions').whereIn('node_id', batch).delete();
        await trx('changes').whereIn('node_id', batch).delete();
        // A shared folder purged: its shares end with it.
        const namespaces = trx('namespaces').whereIn('root_node_id', batch).select('id');
        await trx('shares').whereIn('ns_id', namespaces).delete();
        report.nodes += await trx('nodes').whereIn('id', batch).whereNull('purged_at').update({ purged_at: now, name: trx.ref('id'), head_version: 0, size: 0, target: null, deleted_at: trx.raw('COALESCE(deleted_at, ?)', [now]) });
      }
      await journal(trx, {
        userId: null,
        deviceId: null,
        action: 'node.purge',
        node: { id, ns_id: num(item.ns_id), parent_id: item.parent_id === null ? null : String(item.parent_id), name: id, head_version: 0, deleted_at: now },
      });
      report.items++;
    });
  }
  return report;
}

/** The node and every node under it, in any state. */
async function subtreeIds(trx: Knex.Transaction, id: string): Promise<string[]> {
  const rows: Array<{ id: unknown }> = await trx
    .withRecursive('sub', ['id'], (qb) => {
      qb.select('id').from('nodes').where('id', id).unionAll((u) => {
        u.select('n.id').from('nodes as n').join('sub', 'n.parent_id', 'sub.id');
      });
    })
    .select('id')
    .from('sub');
  return rows.map((r) => String(r.id));
}

/** Versions that stopped being the head before `cutoff` (never a head itself). */
async function purgeOldVersions(db: Knex, cutoff: number): Promise<number> {
  let purged = 0;
  for (;;) {
    const old: Array<{ node_id: unknown; version: unknown }> = await db('versions as v')
      .join('nodes as n', 'n.id', 'v.node_id')
      .join('versions as nx', (j) => j.on('nx.node_id', 'v.node_id').andOn('nx.version', '=', db.raw('v.version + 1')))
      .where('v.version', '<', db.ref('n.head_version'))
      .andWhere('nx.committed_at', '<', cutoff)
      .limit(BATCH)
      .select('v.node_id', 'v.version');
    if (old.length === 0) return purged;
    await writeTransaction(db, async (trx) => {
      for (const r of old) {
        const key = { node_id: String(r.node_id), version: num(r.version) };
        await trx('version_blocks').where(key).delete();
        purged += await trx('versions').where(key).delete();
      }
    });
  }
}

function add(into: PurgeReport, more: PurgeReport): void {
  into.items += more.items;
  into.nodes += more.nodes;
  into.versions += more.versions;
}
