import type { ChangeEntry, ChangesPage } from '../../protocol/types.js';
import { changeEntry, num } from '../db/rows.js';
import type { Actor, Backend } from './context.js';
import { optionalWhole, pageLimit } from './params.js';

/**
 * GET /v1/changes?since=SEQ — the current state of every node of the caller's that changed after
 * SEQ, once per node, in journal order, and the cursor to continue from. The cursor is a position
 * in the one global sequence: its gaps count other users' changes (a leak issue 11's
 * per-namespace journal removes; see the `todo` in test/backend/isolation.test.ts).
 */
export async function listChanges(backend: Backend, actor: Actor, query: { since?: unknown; limit?: unknown }): Promise<ChangesPage> {
  const since = optionalWhole(query.since, 'since', 0);
  const limit = pageLimit(query.limit, backend.settings.limits.max_page_size);
  const rows: Array<Record<string, unknown>> = await backend.db('changes as c')
    .join('nodes as n', 'n.id', 'c.node_id')
    .select('c.seq', 'n.*')
    .where('c.owner_id', actor.userId)
    .andWhere('c.seq', '>', since)
    .orderBy('c.seq')
    .limit(limit + 1); // one more than the page: tells whether anything is left after it
  const page = rows.slice(0, limit);
  const latest = new Map<string, ChangeEntry>();
  for (const row of page) {
    const entry = changeEntry(row);
    latest.delete(entry.id); // keep each node once, at its last position
    latest.set(entry.id, entry);
  }
  const cursor = page.length > 0 ? num(page.at(-1)?.seq) : since;
  return { changes: [...latest.values()], cursor, has_more: rows.length > limit };
}

/** GET /v1/changes/head — the caller's current cursor: start here after a full listing. */
export async function changesHead(backend: Backend, actor: Actor): Promise<{ cursor: number }> {
  const row = await backend.db('changes').where('owner_id', actor.userId).max('seq as seq').first();
  return { cursor: row?.seq === null || row?.seq === undefined ? 0 : num(row.seq) };
}
