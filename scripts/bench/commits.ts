import crypto from 'node:crypto';
import { StratusClient } from '../../protocol/client.js';
import { blake3Hex } from '../../protocol/hash.js';
import { addUser, startServe } from './serve-process.js';

export interface CommitResult {
  clients: number;
  /** The clients' users: one user, or one each. */
  users: number;
  commits: number;
  seconds: number;
  perSecond: number;
}

export interface CommitBenchOptions {
  /** Each client a user of its own (their mutations are in different namespaces), or all one user's. */
  usersEach: boolean;
  /** The server's environment (e.g. STRATUS_GLOBAL_MUTATION_LOCK=1: the journal of before namespaces). */
  env?: NodeJS.ProcessEnv;
}

/**
 * Small commits per second: each client owns one file and loops check → upload one new 4 KiB
 * block → commit on the head, for `seconds`; what a mount does on every save of a small file.
 */
export async function benchCommits(serveArgs: string[], userArgs: string[], clientCounts: number[], seconds: number, o: CommitBenchOptions = { usersEach: false }): Promise<CommitResult[]> {
  const users = o.usersEach ? Math.max(...clientCounts) : 1;
  const tag = crypto.randomBytes(3).toString('hex');
  const tokens: string[] = [];
  for (let i = 0; i < users; i++) tokens.push(await addUser(`bench${tag}-${i}`, userArgs));
  const server = await startServe(serveArgs, o.env);
  const clients = tokens.map((token) => new StratusClient({ server: server.url, token, connections: users > 1 ? 4 : 32 }));
  const results: CommitResult[] = [];
  try {
    for (const n of clientCounts) {
      const files = await Promise.all(
        Array.from({ length: n }, async (_, i) => {
          const client = clients[i % clients.length]!;
          return { client, file: await client.create({ parent_id: (await client.root()).id, name: `c${n}-${i}.bin`, kind: 'file' }) };
        }),
      );
      let commits = 0;
      const deadline = Date.now() + seconds * 1000;
      const start = process.hrtime.bigint();
      await Promise.all(
        files.map(async ({ client, file }) => {
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
      results.push({ clients: n, users: Math.min(n, users), commits, seconds: elapsed, perSecond: commits / elapsed });
    }
    return results;
  } finally {
    for (const client of clients) await client.close();
    await server.stop();
  }
}
