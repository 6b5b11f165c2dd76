import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { HASH_RE } from '../../protocol/hash.js';
import { BlockNotFoundError, type BlockStore, type ByteRange } from './blockstore.js';

/**
 * Blocks as files under `root/ab/cd/<hash>`. A put streams into `root/tmp/`, fsyncs, renames into
 * place and fsyncs the folder, so a crash leaves either no block or the whole block, never a torn
 * or misnamed one. Leftover temp files are removed when the store opens.
 */
export class DiskBlockStore implements BlockStore {
  private readonly tmpDir: string;

  private constructor(private readonly root: string) {
    this.tmpDir = path.join(root, 'tmp');
  }

  static async open(root: string): Promise<DiskBlockStore> {
    const store = new DiskBlockStore(path.resolve(root));
    await fsp.mkdir(store.tmpDir, { recursive: true });
    for (const leftover of await fsp.readdir(store.tmpDir)) {
      await fsp.rm(path.join(store.tmpDir, leftover), { force: true });
    }
    return store;
  }

  private pathOf(hash: string): string {
    if (!HASH_RE.test(hash)) throw new Error(`not a block id: ${hash}`);
    return path.join(this.root, hash.slice(0, 2), hash.slice(2, 4), hash);
  }

  async has(hash: string): Promise<boolean> {
    try {
      await fsp.access(this.pathOf(hash));
      return true;
    } catch {
      return false;
    }
  }

  async put(hash: string, body: Readable): Promise<void> {
    const final = this.pathOf(hash);
    const tmp = path.join(this.tmpDir, `${hash}.${crypto.randomBytes(6).toString('hex')}`);
    const out = fs.createWriteStream(tmp, { flags: 'wx', mode: 0o600 });
    let renamed = false;
    try {
      await pipeline(body, out);
      await syncPath(tmp, 'r+');
      const dir = path.dirname(final);
      await fsp.mkdir(dir, { recursive: true });
      await fsp.rename(tmp, final);
      renamed = true;
      await syncPath(dir, 'r');
    } finally {
      if (!renamed) {
        // A pipeline that fails early settles before its write stream has finished opening (and
        // so creating) the temp file: wait for the stream to close, else the file would appear
        // after this rm and stay behind.
        if (!out.closed) await new Promise<void>((resolve) => out.once('close', () => resolve()));
        await fsp.rm(tmp, { force: true });
      }
    }
  }

  async get(hash: string, range?: ByteRange): Promise<Readable> {
    const file = this.pathOf(hash);
    const handle = await fsp.open(file, 'r').catch((err: NodeJS.ErrnoException) => {
      throw err.code === 'ENOENT' ? new BlockNotFoundError(hash) : err;
    });
    return handle.createReadStream(range ? { start: range.start, end: range.end } : {});
  }

  async delete(hash: string): Promise<void> {
    await fsp.rm(this.pathOf(hash), { force: true });
  }

  async *list(): AsyncIterable<string> {
    for (const a of await readdirOrEmpty(this.root)) {
      if (!/^[0-9a-f]{2}$/.test(a)) continue;
      for (const b of await readdirOrEmpty(path.join(this.root, a))) {
        for (const name of await readdirOrEmpty(path.join(this.root, a, b))) {
          if (HASH_RE.test(name)) yield name;
        }
      }
    }
  }

  async close(): Promise<void> {}
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return (await fsp.readdir(dir)).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** fsync a file (its data) or a folder (a rename in it); fsync acts on the inode, whichever descriptor asks. */
async function syncPath(target: string, flags: 'r' | 'r+'): Promise<void> {
  const fd = await fsp.open(target, flags);
  try {
    await fd.sync();
  } finally {
    await fd.close();
  }
}
