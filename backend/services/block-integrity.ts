import { LRUCache } from 'lru-cache';
import type { Knex } from 'knex';
import { ApiError } from '../../protocol/errors.js';
import { blake3Hex } from '../../protocol/hash.js';
import { BlockNotFoundError, BlockTruncatedError, type BlockStore } from '../blockstore/blockstore.js';
import { journal, mutate } from './journal.js';

/**
 * Whether a stored block still holds the bytes of its id. A block is known good for the life of
 * this process once its bytes were checked: when a verified upload wrote them, or when this
 * process first served it (the whole block read and hashed: ~0.5 ms per 4 MiB, once, not per
 * request). A block whose stored bytes are definitely not the block — missing, shorter than
 * recorded, or hashing to another id — is marked corrupt: check and commits treat it as missing
 * (so a client that has its bytes sends them again, which repairs it), and downloads answer 500
 * block_corrupt after looking again (a block put back in place heals itself). A read that fails
 * for another reason (EMFILE, EIO) proves nothing: 503, nothing marked. Damage done after the
 * check is found by the next server process, or by the drive, which checks every block it fetches.
 */

/** Hashes known good in this process, per store (tests run several servers in one process). */
const intact = new WeakMap<BlockStore, LRUCache<string, true>>();

function intactSet(store: BlockStore): LRUCache<string, true> {
  let set = intact.get(store);
  if (!set) intact.set(store, (set = new LRUCache<string, true>({ max: 200_000 })));
  return set;
}

/** The store holds these verified bytes under `hash` (a verified upload). */
export function markIntact(store: BlockStore, hash: string): void {
  intactSet(store).set(hash, true);
}

export function isIntact(store: BlockStore, hash: string): boolean {
  return intactSet(store).has(hash);
}

function corruptBlock(hash: string): ApiError {
  return new ApiError('block_corrupt', `block ${hash} is damaged in the store; a client that has it can upload it again`);
}

/** The whole block as stored, or null when the store definitely does not hold it whole (missing or short). */
async function readStored(store: BlockStore, hash: string, size: number): Promise<Buffer | null> {
  try {
    const chunks: Buffer[] = [];
    for await (const chunk of await store.get(hash, { start: 0, end: size - 1 })) chunks.push(Buffer.from(chunk as Buffer));
    return Buffer.concat(chunks);
  } catch (err) {
    if (err instanceof BlockNotFoundError || err instanceof BlockTruncatedError) return null;
    throw new ApiError('unavailable', 'the block store could not be read; try again', { retry_after_s: 5 });
  }
}

/**
 * The whole block, read and checked against its id. Good bytes mark it intact (and clear a
 * corrupt mark: the block was put back or repaired); definitely wrong ones mark it corrupt and
 * throw block_corrupt; a failed read throws 503.
 */
export async function readVerified(db: Knex, store: BlockStore, hash: string, size: number, markedCorrupt = false): Promise<Buffer> {
  const bytes = await readStored(store, hash, size);
  if (bytes !== null && bytes.length === size && blake3Hex(bytes) === hash) {
    intactSet(store).set(hash, true);
    if (markedCorrupt) await db('blocks').where({ hash }).update({ corrupt_at: null });
    return bytes;
  }
  await mutate(db, async (trx) => {
    const marked = await trx('blocks').where({ hash }).whereNull('corrupt_at').update({ corrupt_at: Date.now() });
    if (marked > 0) await journal(trx, { userId: null, deviceId: null, action: 'block.corrupt', detail: { hash, size, read: bytes?.length ?? null } });
  });
  throw corruptBlock(hash);
}
