import t from 'tap';
import { ApiError } from '../../protocol/errors.js';
import { commitRandomBlocks, connectEvents, randomBlock, startTestBackend, stopOwnCluster, testEngines, type TestBackend, type TestUser } from '../helpers/backend.js';
import { parseMetrics, scrapeMetrics } from '../helpers/prometheus.js';

/**
 * `GET /metrics` (DESIGN §5, §11): Prometheus text that a real parser reads whole, served without
 * a token, naming no user; and its counters move with the work done — N commits count N, the
 * block bytes uploaded and downloaded are counted exactly, a refused commit is a failure with its
 * reason, a check counts what dedup saved, a hint's lag and the WebSocket connections are seen.
 */

t.teardown(stopOwnCluster);

async function newFile(user: TestUser, name: string): Promise<string> {
  const root = await user.client.root();
  return (await user.client.create({ parent_id: root.id, name, kind: 'file' })).id;
}

const scrape = (backend: TestBackend) => scrapeMetrics(`${backend.url}/metrics`);

for (const engine of testEngines()) {
  t.test(`${engine}: /metrics parses and its counters move with the work`, async (t) => {
    const backend = await startTestBackend(engine);
    t.teardown(() => backend.close());
    const alice = await backend.addUser('alice-metrics');

    const before = await scrape(backend);
    for (const name of ['stratus_commits_total', 'stratus_commit_failures_total', 'stratus_commit_duration_seconds', 'stratus_block_bytes_in_total', 'stratus_block_bytes_out_total', 'stratus_block_check_hashes_total', 'stratus_dedup_ratio', 'stratus_notification_lag_seconds', 'stratus_websocket_connections', 'stratus_db_pool_pending_acquires', 'stratus_db_pool_acquire_seconds', 'process_cpu_seconds_total', 'nodejs_eventloop_lag_seconds']) {
      t.ok(before.family(name), `${name} is exposed`);
    }
    t.notMatch(JSON.stringify(before.families), /alice-metrics/, 'no user name anywhere in the metrics');

    // The hint of a commit reaches an open WebSocket: the lag histogram gets it.
    const events = await connectEvents(backend.url, alice.token);
    t.teardown(() => events.close());
    await events.waitFor(0);
    t.equal((await scrape(backend)).value('stratus_websocket_connections'), 1, 'one WebSocket connection is counted');

    // N commits of fresh blocks.
    const N = 3;
    const sizes = [1000, 2500];
    const blockBytes = N * sizes.reduce((a, b) => a + b, 0);
    const files: string[] = [];
    for (let i = 0; i < N; i++) {
      const id = await newFile(alice, `f${i}`);
      files.push(id);
      await commitRandomBlocks(alice.client, id, 0, sizes);
    }
    await events.waitFor(1);
    const after = await scrape(backend);
    t.equal(after.value('stratus_commits_total') - before.value('stratus_commits_total'), N, `${N} commits → the commit counter +${N}`);
    t.equal(after.value('stratus_commit_duration_seconds_count', { outcome: 'ok' }) - before.value('stratus_commit_duration_seconds_count', { outcome: 'ok' }), N, 'each commit is timed');
    t.equal(after.value('stratus_block_bytes_in_total') - before.value('stratus_block_bytes_in_total'), blockBytes, 'bytes in grow by exactly the block bytes uploaded');
    t.equal(after.value('stratus_committed_bytes_total') - before.value('stratus_committed_bytes_total'), blockBytes, 'committed bytes = the versions’ sizes');
    t.ok(after.value('stratus_notification_lag_seconds_count') >= 1, 'the hint sent for a commit is timed');

    // A commit on a stale base is refused: a failure with its reason, not a commit.
    const refused = await alice.client.commit(files[0]!, { base_version: 0, blocks: [], size: 0 }).then(
      () => undefined,
      (err: unknown) => err,
    );
    t.ok(refused instanceof ApiError && refused.status === 409, 'the stale commit is refused (409)');
    // A commit of a block nobody uploaded is refused too.
    const ghost = randomBlock(100);
    await alice.client.commit(files[1]!, { base_version: 1, blocks: [{ hash: ghost.hash, size: 100 }], size: 100 }).catch(() => undefined);
    const failed = await scrape(backend);
    t.equal(failed.value('stratus_commits_total'), after.value('stratus_commits_total'), 'refused commits are not counted as commits');
    t.equal(failed.value('stratus_commit_failures_total', { reason: 'stale_version', status: '409' }), 1, 'the stale base counts as a stale_version failure');
    t.equal(failed.value('stratus_commit_failures_total', { reason: 'missing_blocks' }), 1, 'the missing block counts as a missing_blocks failure');
    t.equal(failed.value('stratus_commit_duration_seconds_count', { outcome: 'failed' }), 2, 'failed commits are timed apart');

    // Dedup: a check of blocks already stored finds them present (nothing to upload again).
    const manifest = await alice.client.manifest(files[2]!, 1);
    const fresh = randomBlock(10);
    await alice.client.checkBlocks([...manifest.blocks.map((b) => b.hash), fresh.hash]);
    const checked = await scrape(backend);
    t.equal(checked.value('stratus_block_check_hashes_total', { result: 'present' }) - failed.value('stratus_block_check_hashes_total', { result: 'present' }), manifest.blocks.length, 'hashes already stored count as present');
    t.equal(checked.value('stratus_block_check_hashes_total', { result: 'missing' }) - failed.value('stratus_block_check_hashes_total', { result: 'missing' }), 1, 'an unknown hash counts as missing');

    // A copy that reuses stored blocks commits bytes without uploading any: the dedup ratio rises.
    const copy = await newFile(alice, 'copy');
    await alice.client.commit(copy, { base_version: 0, blocks: manifest.blocks.map(({ hash, size }) => ({ hash, size })), size: manifest.size });
    const deduped = await scrape(backend);
    t.equal(deduped.value('stratus_block_bytes_in_total'), checked.value('stratus_block_bytes_in_total'), 'the copy uploaded nothing');
    t.equal(deduped.value('stratus_dedup_ratio'), (blockBytes + manifest.size) / blockBytes, 'dedup ratio = committed bytes / uploaded bytes');

    // Bytes out: a whole block and a range of one.
    const first = manifest.blocks[0]!;
    await alice.client.getBlock(first.hash);
    await alice.client.getBlock(first.hash, { offset: 10, length: 100 });
    const served = await scrape(backend);
    t.equal(served.value('stratus_block_bytes_out_total') - checked.value('stratus_block_bytes_out_total'), first.size + 100, 'bytes out grow by the bytes served (a whole block, then a 100-byte range)');
    t.ok(served.value('stratus_db_pool_acquire_seconds_count') > 0, 'database pool acquires are timed');
    t.ok(served.value('stratus_db_pool_connections', { state: 'max' }) >= 1, 'the pool size is shown');
  });
}

t.test('/metrics needs no token and serves the registry RunningServer.metrics gives', async (t) => {
  const backend = await startTestBackend('sqlite');
  t.teardown(() => backend.close());
  const res = await backend.fetch('/metrics');
  t.equal(res.status, 200, 'GET /metrics without a token: 200');
  t.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/, 'Prometheus text content type');
  const text = await res.text();
  t.ok(parseMetrics(text).family('stratus_commits_total'), 'parses');
  t.equal(parseMetrics(await backend.metrics.text()).value('stratus_commits_total'), 0, 'RunningServer.metrics gives the same registry (for a listener of its own)');
});

t.test('a malformed exposition fails the parse check (the helper proves something)', async (t) => {
  t.throws(() => parseMetrics('# TYPE a counter\na{b="c" 3\n'), /invalid line/, 'a broken sample line is not silently skipped');
  t.equal(parseMetrics('# TYPE a counter\na{b="c"} 3\n').value('a', { b: 'c' }), 3, 'a good one reads');
});
