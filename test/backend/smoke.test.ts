import t from 'tap';
import { randomBlock, startTestBackend, stopOwnCluster, testEngines } from '../helpers/backend.js';

t.teardown(stopOwnCluster);

for (const engine of testEngines()) {
  t.test(`a file round-trips through create, upload, commit and download [${engine}]`, async (t) => {
    const backend = await startTestBackend(engine);
    t.teardown(() => backend.close());
    const alice = await backend.addUser('alice');
    const root = await alice.client.root();
    const file = await alice.client.create({ parent_id: root.id, name: 'a.txt', kind: 'file' });
    const block = randomBlock(1000);
    t.same(await alice.client.checkBlocks([block.hash]), { missing: [block.hash] });
    await alice.client.putBlock(block.hash, block.bytes);
    t.same(await alice.client.checkBlocks([block.hash]), { missing: [] });
    const v = await alice.client.commit(file.id, { base_version: 0, blocks: [{ hash: block.hash, size: 1000 }], size: 1000 });
    t.equal(v.version, 1);
    t.same(await alice.client.getBlock(block.hash), block.bytes);
    t.same(await alice.client.getBlock(block.hash, { offset: 10, length: 20 }), block.bytes.subarray(10, 30));
    const feed = await alice.client.changes(undefined);
    t.ok(feed.changes.some((c) => c.id === file.id && c.head_version === 1));
  });
}
