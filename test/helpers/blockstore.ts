import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { BlockStore } from '../../backend/blockstore/blockstore.js';

/** What the block store tests share: reading a stream whole, listing a store, the files of a folder, a body that fails. */

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Every hash the store lists, sorted. */
export async function listAll(store: BlockStore): Promise<string[]> {
  const out: string[] = [];
  for await (const hash of store.list()) out.push(hash);
  return out.sort();
}

/** Every regular file under `dir`, relative to it, sorted. */
export async function filesUnder(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name)))
    .sort();
}

/** A stream that yields `chunks` and then fails instead of ending (a client that disconnects). */
export function failingSource(chunks: Buffer[]): Readable {
  let i = 0;
  return new Readable({
    read() {
      if (i < chunks.length) this.push(chunks[i++]);
      else this.destroy(new Error('source failed midway'));
    },
  });
}
