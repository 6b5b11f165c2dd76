import crypto from 'node:crypto';
import { StratusClient } from '../../protocol/client.js';
import { blake3Hex } from '../../protocol/hash.js';
import { addUser, startServe } from './serve-process.js';

export interface CommitResult {
  clients: number;
  commits: number;
  seconds: number;
  perSecond: number;
}

/**
 * Small commits per second: each client owns one file and loops check → upload one new 4 KiB
 * block → commit on the head, for `seconds`; what a mount does on every save of a small file.
 */
export async function benchCommits(serveArgs: string[], userArgs: string[], clientCounts: number[], seconds: number): Promise<CommitResult[]> {
  const token = await addUser(`bench${crypto.randomBytes(3).toString('hex')}`, userArgs);
  const server = await startServe(serveArgs);
  const client = new StratusClient({ server: server.url, token, connections: 32 });
  const results: CommitResult[] = [];
  try {
    const root = await client.root();
    for (const n of clientCounts) {
      const files = await Promise.all(
        Array.from({ length: n }, (_, i) => client.create({ parent_id: root.id, name: `c${n}-${i}.bin`, kind: 'file' })),
      );
      let commits = 0;
      const deadline = Date.now() + seconds * 1000;
      const start = process.hrtime.bigint();
      await Promise.all(
        files.map(async (file) => {
          let head = 0;
          while (Date.now() < deadline) {
            const bytes = crypto.randomBytes(4096);
            const hash = blake3Hex(bytes);
            const { missing } = await client.checkBlocks([hash]);
            if (missing.length > 0) await client.putBlock(hash, bytes);
            head = (await client.commit(file.id, { base_version: head, blocks: [{ hash, size: bytes.length }], size: bytes.length })).version;
            commits++;
          }
        }),
      );
      const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
      results.push({ clients: n, commits, seconds: elapsed, perSecond: commits / elapsed });
    }
    return results;
  } finally {
    await client.close();
    await server.stop();
  }
}
