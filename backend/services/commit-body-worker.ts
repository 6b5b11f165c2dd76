import { ApiError } from '../../protocol/errors.js';
import { parseCommitBody, type CommitBody, type CommitLimits } from './commit-body.js';

/** What crosses back from the worker: the parsed commit, or the refusal as plain data. */
export type WorkerAnswer = { ok: CommitBody } | { refused: { code: ApiError['code']; message: string; extra: Record<string, unknown>; status: number } };

/** A piscina task (commit-body-pool.ts): parses one commit body off the server's event loop. */
export default function parse({ bytes, limits }: { bytes: Uint8Array; limits: CommitLimits }): WorkerAnswer {
  try {
    return { ok: parseCommitBody(bytes, limits) };
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    return { refused: { code: err.code, message: err.message, extra: err.extra, status: err.status } };
  }
}
