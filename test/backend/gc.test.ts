import crypto from 'node:crypto';
import t from 'tap';
import { collectGarbage } from '../../backend/jobs/gc.js';
import { runHistoryJobs } from '../../backend/jobs/history-jobs.js';
import { takeLease } from '../../backend/jobs/lease.js';
import { purgeExpired } from '../../backend/jobs/purge.js';
import { ApiError } from '../../protocol/errors.js';
import type { StratusClient } from '../../protocol/client.js';
import type { BlockRef } from '../../protocol/types.js';
import { blockHash, startTestBackend, stopOwnCluster, testEngines } from '../helpers/backend.js';

/**
 * Block GC, invariant 7: it never deletes a block a retained version names, nor one a commit on
 * its way counts on. Raced here hard — a grace period of 2 s (an hour by default), old versions
 * purged over and over so blocks keep losing their last reference — against 20 committers that
 * reuse and drop blocks, each checking and uploading just before committing. After the race every
 * version left reads back and verifies, and the store holds exactly the blocks versions name.
 */

const GRACE_MS = 2_000;

t.teardown(stopOwnCluster);

const POOL = Array.from({ length: 64 }, (_, i) => crypto.randomBytes(1000 + i * 37));
const POOL_HASHES = POOL.map((b) => blockHash(b));

/** Commits `picks` (indexes into the pool) on top of the head: check, upload what is missing, commit; what the GC took meanwhile is sent again. */
async function commitPicks(client: StratusClient, fileId: string, picks: number[], stats: { retries: number }): Promise<void> {
  const blocks: BlockRef[] = picks.map((i) => ({ hash: POOL_HASHES[i]!, size: POOL[i]!.length }));
  for (let attempt = 0; attempt < 50; attempt++) {
    const head = (await client.node(fileId)).head_version;
    const { missing } = await client.checkBlocks(blocks.map((b) => b.hash));
    try {
      for (const hash of new Set(missing)) await client.putBlock(hash, POOL[POOL_HASHES.indexOf(hash)]!);
      await client.commit(fileId, { base_version: head, blocks, size: blocks.reduce((a, b) => a + b.size, 0) });
      return;
    } catch (err) {
      // Collected between check and commit (409 missing_blocks), or while being stored (503): again.
      if (!(err instanceof ApiError) || !['missing_blocks', 'unavailable', 'stale_version'].includes(err.code)) throw err;
      stats.retries++;
    }
  }
  throw new Error('no commit after 50 attempts');
}

for (const engine of testEngines()) {
  t.test(`block GC [${engine}]`, async (t) => {
    const backend = await startTestBackend(engine, { history: { jobs_interval_ms: 0, gc_grace_ms: GRACE_MS } });
    t.teardown(() => backend.close());

    t.test('GC racing 20 committers that reuse and drop blocks never deletes a referenced block; purged data is gone from the store', async (t) => {
      const users = [await backend.addUser('gc-a'), await backend.addUser('gc-b')];
      const files: Array<{ client: StratusClient; id: string }> = [];
      for (let i = 0; i < 20; i++) {
        const u = users[i % users.length]!;
        const root = await u.client.root();
        files.push({ client: u.client, id: (await u.client.create({ parent_id: root.id, name: `f${i}`, kind: 'file' })).id });
      }
      const stats = { retries: 0 };
      const next = () => crypto.randomInt(1 << 30);
      let committing = true;
      const committers = files.map(async (f) => {
        for (let round = 0; round < 8; round++) await commitPicks(f.client, f.id, [next() % 64, next() % 64], stats);
      });
      const gcRuns = { runs: 0, deleted: 0 };
      const collector = (async () => {
        while (committing) {
          // Every version but the head dropped at once: the GC takes all it may.
          await purgeExpired(backend.db, Date.now() + 1);
          const r = await collectGarbage(backend.db, backend.store, GRACE_MS);
          gcRuns.runs++;
          gcRuns.deleted += r.deleted;
        }
      })();
      await Promise.all(committers).finally(() => (committing = false));
      await collector;
      t.comment(`${gcRuns.runs} GC runs deleted ${gcRuns.deleted} blocks; committers retried ${stats.retries} times`);
      t.ok(gcRuns.runs >= 2 && gcRuns.deleted > 0, 'the GC ran during the race and deleted blocks');

      for (const f of files) {
        for (const v of (await f.client.versions(f.id)).versions) {
          const m = await f.client.manifest(f.id, v.version);
          for (const b of m.blocks) {
            const bytes = await f.client.getBlock(b.hash);
            if (blockHash(bytes) !== b.hash) t.fail(`version ${v.version} of a file: block ${b.hash} does not verify`);
          }
        }
      }
      t.pass('every retained version\'s blocks download and verify');

      await purgeExpired(backend.db, Date.now() + 1);
      await collectGarbage(backend.db, backend.store, 0);
      const referenced = new Set((await backend.db('version_blocks').distinct('hash')).map((r: { hash: unknown }) => String(r.hash)));
      const stored = new Set<string>();
      for await (const h of backend.store.list()) stored.add(h);
      t.same([...stored].sort(), [...referenced].sort(), 'the store holds exactly the blocks that versions name');
    });

    t.test('a block uploaded or found by check within the grace period is kept for the commit on its way', async (t) => {
      const u = await backend.addUser('gc-grace');
      const root = await u.client.root();
      const f = await u.client.create({ parent_id: root.id, name: 'later.bin', kind: 'file' });
      const bytes = crypto.randomBytes(500);
      const hash = blockHash(bytes);
      await u.client.putBlock(hash, bytes);
      const r = await collectGarbage(backend.db, backend.store, 60_000);
      t.ok(await backend.store.has(hash), `an unreferenced block uploaded just now is kept (${JSON.stringify(r)})`);
      // The block is old now (as if uploaded long ago); a check finds it and claims it again.
      await backend.db('blocks').where({ hash }).update({ last_claimed_at: Date.now() - 3_600_000 });
      t.same((await u.client.checkBlocks([hash])).missing, [], 'check: present');
      await collectGarbage(backend.db, backend.store, 60_000);
      t.ok(await backend.store.has(hash), 'claimed by the check: kept');
      await u.client.commit(f.id, { base_version: 0, blocks: [{ hash, size: 500 }], size: 500 });
      t.ok(blockHash(await u.client.getBlock(hash)) === hash, 'the commit that followed the check reads back');
    });

    t.test('one runner at a time across backends: the lease', async (t) => {
      t.ok(await takeLease(backend.db, 'test-job', 60_000, 'backend-1'), 'the first takes it');
      t.notOk(await takeLease(backend.db, 'test-job', 60_000, 'backend-2'), 'a second does not while it is held');
      t.ok(await takeLease(backend.db, 'test-job', 60_000, 'backend-1'), 'its holder renews it');
      await backend.db('job_leases').where({ name: 'test-job' }).update({ expires_at: Date.now() - 1 });
      t.ok(await takeLease(backend.db, 'test-job', 60_000, 'backend-2'), 'an expired lease (its holder died) is taken over');
      const results = await Promise.all([1, 2, 3, 4].map((i) => takeLease(backend.db, 'race-job', 60_000, `b${i}`)));
      t.equal(results.filter(Boolean).length, 1, 'four asking at once: exactly one gets it');
      const run = await runHistoryJobs(backend.db, backend.store, backend.settings.history);
      t.ok(run, 'the scheduled run takes its own lease');
    });
  });
}
