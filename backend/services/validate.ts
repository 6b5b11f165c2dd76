import type { z } from 'zod';
import { ApiError } from '../../protocol/errors.js';

/** Validates a request body against a schema; a mismatch is a 400 naming the first offending field. */
export function parseBody<T extends z.ZodType>(schema: T, body: unknown): z.infer<T> {
  const result = schema.safeParse(body);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue && issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
    throw new ApiError('bad_request', `${where}${issue?.message ?? 'invalid request body'}`);
  }
  return result.data;
}
