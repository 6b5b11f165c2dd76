import fs from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { errorCode, raw } from '../helpers/api-assert.js';
import { randomBlock, startTestBackend, stopOwnCluster, testEngines, type TestBackend } from '../helpers/backend.js';
import { damageFile } from '../helpers/corrupt.js';

/*
 * Issue 9, finding 2 (the server's side): a block damaged in the store is never served as if it
 * were the block. The server notices on read, answers 500 block_corrupt (and logs it), and
 * treats the block as missing for check and commits, so a client that holds the right bytes
 * uploads them again, which repairs it for everyone who can read it.
 */

t.teardown(stopOwnCluster);

const KiB = 1024;

function storedFile(backend: TestBackend, hash: string): string {
  return path.join(backend.dataDir, 'blocks', hash.slice(0, 2), hash.slice(2, 4), hash);
}

for (const engine of testEngines()) {
  t.test(`damaged blocks in the store [${engine}]`, async (t) => {
    const backend = await startTestBackend(engine);
    t.teardown(() => backend.close());
    const alice = await backend.addUser('alice');
    const bob = await backend.addUser('bob');
    const root = await alice.client.root();

    for (const how of ['flip', 'truncate', 'delete'] as const) {
      t.test(`a block ${how === 'delete' ? 'deleted from' : `${how}ped in`} the store: 500 block_corrupt, reported missing, repaired by an upload`, async (t) => {
        const block = randomBlock(300 * KiB);
        await alice.client.putBlock(block.hash, block.bytes);
        const file = await alice.client.create({ parent_id: root.id, name: `f-${how}`, kind: 'file' });
        await alice.client.commit(file.id, { base_version: 0, blocks: [{ hash: block.hash, size: block.bytes.length }], size: block.bytes.length });
        if (how === 'delete') await fs.rm(storedFile(backend, block.hash));
        else await damageFile(storedFile(backend, block.hash), how);

        const res = await raw(backend, 'GET', `/v1/blocks/${block.hash}`, { token: alice.token });
        t.equal(res.status, 500, 'not a 200 with the wrong bytes');
        t.equal(errorCode(res), 'block_corrupt');
        t.notOk(res.text.includes(block.bytes.subarray(0, 64).toString('latin1')), 'no block bytes in the answer');
        const ranged = await raw(backend, 'GET', `/v1/blocks/${block.hash}`, { token: alice.token, headers: { range: 'bytes=0-99' } });
        t.equal(errorCode(ranged), 'block_corrupt', 'a range of it too');
        t.same(await alice.client.checkBlocks([block.hash]), { missing: [block.hash] }, 'check reports it missing, so a client sends it again');
        const other = await alice.client.create({ parent_id: root.id, name: `g-${how}`, kind: 'file' });
        await t.rejects(alice.client.commit(other.id, { base_version: 0, blocks: [{ hash: block.hash, size: block.bytes.length }], size: block.bytes.length }), { status: 409, code: 'missing_blocks' }, 'a commit naming it is refused until it is whole again');

        // Bob has the same bytes (dedup): his upload repairs the block for alice too.
        await bob.client.putBlock(block.hash, block.bytes);
        t.ok((await alice.client.getBlock(block.hash)).equals(block.bytes), 'alice reads the right bytes again');
        t.ok((await alice.client.getBlock(block.hash, { offset: 1000, length: 100 })).equals(block.bytes.subarray(1000, 1100)), 'and ranges of it');
        t.same(await alice.client.checkBlocks([block.hash]), { missing: [] }, 'no longer missing');
        const audit = await backend.db('audit').where({ action: 'block.corrupt' });
        t.ok(audit.some((r: { detail: string }) => r.detail.includes(block.hash)), 'the damage is recorded in the audit log');
      });
    }
  });
}
