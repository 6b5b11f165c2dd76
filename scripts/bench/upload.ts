import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { StratusClient } from '../../protocol/client.js';
import { blake3Hex } from '../../protocol/hash.js';
import { addUser, startServe } from './serve-process.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

export interface UploadResult {
  bytes: number;
  uploadMBs: number;
  cpMBs: number;
  cpSyncMBs: number;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/**
 * PUT /v1/blocks throughput on loopback (4 MiB blocks, 4 in flight, each verified with BLAKE3 and
 * fsynced by the server) against `cp` of the same bytes on the same disk, with and without fsync.
 */
export async function benchUpload(workDir: string, totalMiB: number): Promise<UploadResult> {
  const blockSize = 4 * MiB;
  const count = Math.ceil(totalMiB / 4);
  const src = path.join(workDir, 'upload-src.bin');
  const blocks: Array<{ hash: string; bytes: Buffer }> = [];
  const handle = await fs.open(src, 'w');
  for (let i = 0; i < count; i++) {
    const bytes = crypto.randomBytes(blockSize);
    blocks.push({ hash: blake3Hex(bytes), bytes });
    await handle.write(bytes);
  }
  await handle.sync();
  await handle.close();
  const bytes = count * blockSize;

  const cpSeconds = await timed(() => run('cp', [src, path.join(workDir, 'cp-dst.bin')]));
  const cpSyncSeconds = await timed(async () => {
    await run('cp', [src, path.join(workDir, 'cp-dst2.bin')]);
    await run('sync', [path.join(workDir, 'cp-dst2.bin')]);
  });

  const dataDir = path.join(workDir, 'upload-data');
  const token = await addUser('bench', ['--data', dataDir]);
  const server = await startServe(['--data', dataDir]);
  const client = new StratusClient({ server: server.url, token, connections: 4 });
  try {
    let next = 0;
    const uploadSeconds = await timed(() =>
      Promise.all(
        Array.from({ length: 4 }, async () => {
          while (next < blocks.length) {
            const block = blocks[next++]!;
            await client.putBlock(block.hash, block.bytes);
          }
        }),
      ),
    );
    return { bytes, uploadMBs: bytes / MiB / uploadSeconds, cpMBs: bytes / MiB / cpSeconds, cpSyncMBs: bytes / MiB / cpSyncSeconds };
  } finally {
    await client.close();
    await server.stop();
  }
}
