import fs from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { StratusClient } from '../../protocol/client.js';
import { errorCode, raw } from '../helpers/api-assert.js';
import { randomBlock, startTestBackend, stopOwnCluster, testEngines, type TestBackend } from '../helpers/backend.js';
import { damageFile } from '../helpers/corrupt.js';

/*
 * Issue 9, finding 2 (the server's side): a block damaged in the store is never served as if it
 * were the block. The server notices on read, answers 500 block_corrupt (and audits it), and
 * treats the block as missing for check and commits, so a client that holds the right bytes
 * uploads them again, which repairs it for everyone who can read it. Only definite damage marks
 * a block: a read that merely fails is a 503, and a block put back in place heals itself.
 */

t.teardown(stopOwnCluster);

const KiB = 1024;

function storedFile(backend: TestBackend, hash: string): string {
  return path.join(backend.dataDir, 'blocks', hash.slice(0, 2), hash.slice(2, 4), hash);
}

for (const engine of testEngines()) {
  t.test(`damaged blocks in the store [${engine}]`, async (t) => {
    let backend = await startTestBackend(engine);
    t.teardown(() => backend.close());
    const alice = await backend.addUser('alice');
    const bob = await backend.addUser('bob');
    const root = await alice.client.root();
    const clientOf = (token: string) => {
      const client = new StratusClient({ server: backend.url, token });
      t.teardown(() => client.close());
      return client;
    };
    const stored = async (name: string, size = 300 * KiB) => {
      const block = randomBlock(size);
      await clientOf(alice.token).putBlock(block.hash, block.bytes);
      const file = await clientOf(alice.token).create({ parent_id: root.id, name, kind: 'file' });
      await clientOf(alice.token).commit(file.id, { base_version: 0, blocks: [{ hash: block.hash, size: block.bytes.length }], size: block.bytes.length });
      return block;
    };

    for (const how of ['flip', 'truncate', 'delete'] as const) {
      t.test(`a block ${how === 'delete' ? 'deleted from' : how === 'flip' ? 'flipped in' : 'truncated in'} the store: 500 block_corrupt, reported missing, repaired by an upload`, async (t) => {
        const block = await stored(`f-${how}`);
        if (how === 'delete') await fs.rm(storedFile(backend, block.hash));
        else await damageFile(storedFile(backend, block.hash), how);
        // A server that uploaded the bytes itself trusts them for its lifetime; a restarted one checks on first read.
        if (how === 'flip') backend = await backend.restart();
        const res = await raw(backend, 'GET', `/v1/blocks/${block.hash}`, { token: alice.token });
        t.equal(res.status, 500, 'not a 200 with the wrong bytes');
        t.equal(errorCode(res), 'block_corrupt');
        t.notOk(res.text.includes(block.bytes.subarray(0, 64).toString('latin1')), 'no block bytes in the answer');
        const ranged = await raw(backend, 'GET', `/v1/blocks/${block.hash}`, { token: alice.token, headers: { range: 'bytes=0-99' } });
        t.equal(errorCode(ranged), 'block_corrupt', 'a range of it too');
        const alices = clientOf(alice.token);
        t.same(await alices.checkBlocks([block.hash]), { missing: [block.hash] }, 'check reports it missing, so a client sends it again');
        const other = await alices.create({ parent_id: root.id, name: `g-${how}`, kind: 'file' });
        await t.rejects(alices.commit(other.id, { base_version: 0, blocks: [{ hash: block.hash, size: block.bytes.length }], size: block.bytes.length }), { status: 409, code: 'missing_blocks' }, 'a commit naming it is refused until it is whole again');

        // Bob has the same bytes (dedup): his upload repairs the block for alice too.
        await clientOf(bob.token).putBlock(block.hash, block.bytes);
        t.ok((await alices.getBlock(block.hash)).equals(block.bytes), 'alice reads the right bytes again');
        t.ok((await alices.getBlock(block.hash, { offset: 1000, length: 100 })).equals(block.bytes.subarray(1000, 1100)), 'and ranges of it');
        t.same(await alices.checkBlocks([block.hash]), { missing: [] }, 'no longer missing');
        const audit = await backend.db('audit').where({ action: 'block.corrupt' });
        t.ok(audit.some((r: { detail: string }) => r.detail.includes(block.hash)), 'the damage is recorded in the audit log');
      });
    }

    t.test('a block file moved away and put back heals by itself: a marked block is looked at again on the next download', async (t) => {
      const block = await stored('moved');
      const file = storedFile(backend, block.hash);
      await fs.rename(file, `${file}.away`);
      t.equal(errorCode(await raw(backend, 'GET', `/v1/blocks/${block.hash}`, { token: alice.token })), 'block_corrupt', 'while it is gone');
      await fs.rename(`${file}.away`, file);
      t.ok((await clientOf(alice.token).getBlock(block.hash)).equals(block.bytes), 'back in place: served again');
      t.same(await clientOf(alice.token).checkBlocks([block.hash]), { missing: [] }, 'and no longer reported missing');
    });

    t.test('a read that fails for another reason is a 503 and marks nothing', async (t) => {
      // Smaller than a folder's st_size (4096), so the store's size check passes and read(2) fails.
      const block = await stored('unreadable', 1000);
      backend = await backend.restart(); // not yet checked by this process: the first download reads it whole
      const file = storedFile(backend, block.hash);
      // A folder where the file was: open(2) succeeds, read(2) fails with EISDIR (like EIO or EMFILE: no proof of damage).
      await fs.rename(file, `${file}.away`);
      await fs.mkdir(file);
      const res = await raw(backend, 'GET', `/v1/blocks/${block.hash}`, { token: alice.token });
      t.equal(res.status, 503, '503: try again');
      t.ok(Number(res.headers.get('retry-after')) > 0, 'with Retry-After');
      t.same(await clientOf(alice.token).checkBlocks([block.hash]), { missing: [] }, 'not marked: check still counts it present');
      await fs.rmdir(file);
      await fs.rename(`${file}.away`, file);
      t.ok((await clientOf(alice.token).getBlock(block.hash)).equals(block.bytes), 'served once readable');
    });
  });
}
