import { LRUCache } from 'lru-cache';
import type { Knex } from 'knex';
import { ApiError } from '../../protocol/errors.js';
import { blake3Hex } from '../../protocol/hash.js';
import type { BlockStore } from '../blockstore/blockstore.js';
import { journal, mutate } from './journal.js';

/**
 * Whether a stored block still holds the bytes of its id. A block's bytes are hashed the first
 * time this process serves it; from then on it is trusted for the life of the process, so a
 * download costs one BLAKE3 pass per block per process (~0.5 ms per 4 MiB), not one per request.
 * Damage done after that first read is found by the next server process (or by the drive, which
 * checks every block it fetches). A block that fails — short, missing, bytes of
 * another id — is marked corrupt: downloads answer 500 block_corrupt, and check and commits treat
 * it as missing until a client uploads the right bytes again (putBlock clears the mark).
 */

/** Hashes verified in this process, per store (tests run several servers in one process). */
const intact = new WeakMap<BlockStore, LRUCache<string, true>>();

function intactSet(store: BlockStore): LRUCache<string, true> {
  let set = intact.get(store);
  if (!set) intact.set(store, (set = new LRUCache<string, true>({ max: 200_000 })));
  return set;
}

export function isIntact(store: BlockStore, hash: string): boolean {
  return intactSet(store).has(hash);
}

export function corruptBlock(hash: string): ApiError {
  return new ApiError('block_corrupt', `block ${hash} is damaged in the store; a client that has it can upload it again`);
}

/**
 * The whole block, read and checked against its id; marks it intact, or corrupt (and throws
 * block_corrupt) when the store's bytes are not the block's.
 */
export async function readVerified(db: Knex, store: BlockStore, hash: string, size: number): Promise<Buffer> {
  let bytes: Buffer | null = null;
  try {
    const chunks: Buffer[] = [];
    for await (const chunk of await store.get(hash, { start: 0, end: size - 1 })) chunks.push(Buffer.from(chunk as Buffer));
    bytes = Buffer.concat(chunks);
  } catch {
    // Missing or shorter than recorded: the same as wrong bytes.
  }
  if (bytes === null || bytes.length !== size || blake3Hex(bytes) !== hash) {
    await mutate(db, async (trx) => {
      await trx('blocks').where({ hash }).whereNull('corrupt_at').update({ corrupt_at: Date.now() });
      await journal(trx, { userId: null, deviceId: null, action: 'block.corrupt', detail: { hash, size, read: bytes?.length ?? null } });
    });
    throw corruptBlock(hash);
  }
  intactSet(store).set(hash, true);
  return bytes;
}
