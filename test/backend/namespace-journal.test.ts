import t from 'tap';
import type { StratusClient } from '../../protocol/client.js';
import { startTestBackend, stopOwnCluster, testEngines, type TestBackend } from '../helpers/backend.js';

/**
 * The journal by namespace (DESIGN §3, §4): within a namespace, seq order is commit order, so a
 * reader following its cursor while many committers race never skips a change that commits late;
 * mutations of different namespaces never wait for each other (no global lock: on PostgreSQL, a
 * transaction holding one user's namespace row does not hold up another user's changes).
 */

t.teardown(stopOwnCluster);

/** Reads the feed from `cursor` to its end; adds what it saw to `seen`; returns the cursor after. */
async function drain(client: StratusClient, cursor: string, seen: Set<string>): Promise<string> {
  for (;;) {
    const page = await client.changes(cursor, 7);
    for (const c of page.changes) seen.add(c.id);
    cursor = page.cursor;
    if (!page.has_more) return cursor;
  }
}

for (const engine of testEngines()) {
  t.test(`journal by namespace [${engine}]`, async (t) => {
    const backend: TestBackend = await startTestBackend(engine);
    t.teardown(() => backend.close());

    t.test('a reader following its cursor while 8 committers race in one namespace sees every change', async (t) => {
      const { client } = await backend.addUser('racer');
      const root = await client.root();
      let cursor = (await client.changesHead()).cursor;
      const seen = new Set<string>();
      const made: string[] = [];
      let writing = true;
      const reader = (async () => {
        while (writing) cursor = await drain(client, cursor, seen);
      })();
      await Promise.all(
        Array.from({ length: 8 }, async (_, w) => {
          for (let i = 0; i < 25; i++) made.push((await client.create({ parent_id: root.id, name: `w${w}-${i}`, kind: 'file' })).id);
        }),
      );
      writing = false;
      await reader;
      cursor = await drain(client, cursor, seen);
      const missed = made.filter((id) => !seen.has(id));
      t.same(missed, [], `all ${made.length} creates came through the feed while it was read (none skipped)`);
      t.equal(cursor, (await client.changesHead()).cursor, 'and the reader ends at the head');
    });

    if (engine === 'postgres') {
      t.test('a transaction holding one user\'s namespace does not hold up another user\'s changes', async (t) => {
        const alice = await backend.addUser('alice-ns');
        const bob = await backend.addUser('bob-ns');
        const aliceRoot = await alice.client.root();
        const bobRoot = await bob.client.root();
        const ns = await backend.db('namespaces').where({ root_node_id: aliceRoot.id }).first('id');
        const trx = await backend.db.transaction();
        try {
          await trx.raw('SELECT 1 FROM namespaces WHERE id = ? FOR UPDATE', [ns.id]);
          let aliceDone = false;
          const aliceCreate = alice.client.create({ parent_id: aliceRoot.id, name: 'waits', kind: 'file' }).then(() => (aliceDone = true));
          // Alice's create is blocked on her namespace's row (PostgreSQL shows it waiting on a lock).
          const deadline = Date.now() + 10_000;
          for (;;) {
            const { rows } = await trx.raw("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'");
            if (rows[0].n > 0) break;
            if (Date.now() > deadline) throw new Error('alice\'s create never waited on her namespace');
            await new Promise((r) => setTimeout(r, 10));
          }
          const made = await bob.client.create({ parent_id: bobRoot.id, name: 'goes', kind: 'file' });
          t.equal(made.name, 'goes', 'bob\'s create commits while alice\'s namespace is held');
          t.equal(aliceDone, false, 'alice\'s waits for her namespace');
          await trx.commit();
          await aliceCreate;
          t.equal(aliceDone, true, 'and goes once it is free');
        } finally {
          if (!trx.isCompleted()) await trx.rollback();
        }
      });
    }
  });
}
