import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { ApiError } from '../../protocol/errors.js';
import { parseCommitBody, type CommitBody, type CommitLimits } from './commit-body.js';
import type { WorkerAnswer } from './commit-body-worker.js';

/**
 * Bodies up to this size are parsed inline (a few hundred blocks: well under a millisecond);
 * larger ones in a worker thread. A 100,000-block manifest (9 MB of JSON) costs ~150 ms of
 * decoding, parsing, checking and re-serializing, which on the event loop delayed every other
 * request of the server by as much.
 */
const INLINE_MAX_BYTES = 256 * 1024;

let pool: Piscina | undefined;

/** The worker module: the compiled one also when this file runs from source (tests under tsx). */
function workerFile(): string {
  return fileURLToPath(import.meta.url).endsWith('.ts')
    ? fileURLToPath(new URL('../../dist/backend/services/commit-body-worker.js', import.meta.url))
    : fileURLToPath(new URL('./commit-body-worker.js', import.meta.url));
}

/** `parseCommitBody` without holding up the event loop for big bodies. */
export async function parseCommitBodyOffLoop(bytes: Buffer, limits: CommitLimits): Promise<CommitBody> {
  if (bytes.length <= INLINE_MAX_BYTES) return parseCommitBody(bytes, limits);
  // Threads start on demand and end after a quiet minute: an idle server keeps none.
  pool ??= new Piscina({ filename: workerFile(), minThreads: 0, maxThreads: 2, idleTimeout: 60_000 });
  const answer = (await pool.run({ bytes, limits: { ...limits } })) as WorkerAnswer;
  if ('ok' in answer) return answer.ok;
  const { code, message, extra, status } = answer.refused;
  throw new ApiError(code, message, extra, status);
}
