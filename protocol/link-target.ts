import { ApiError } from './errors.js';
import { isWellFormed } from './names.js';

/** The mode every link has (as on Linux, where a symlink's own mode is never used). */
export const LINK_MODE = 0o777;

/** The longest target a link may have: what symlink(2) takes on Linux (PATH_MAX − 1 bytes). */
export const MAX_TARGET_BYTES = 4095;

/**
 * Why `target` cannot be a link's target, or null when it can: 1–4095 bytes of valid UTF-8,
 * without NUL. Anything else goes: a target is stored exactly as written (no normalization, `/`,
 * `..`, absolute paths and names that do not exist are all fine) and never resolved by the server.
 */
export function targetProblem(target: unknown): string | null {
  if (typeof target !== 'string') return 'target must be a string';
  if (target.length === 0) return 'target must not be empty';
  if (target.includes('\0')) return 'target must not contain NUL';
  if (!isWellFormed(target)) return 'target must be valid Unicode';
  const bytes = Buffer.byteLength(target, 'utf8');
  if (bytes > MAX_TARGET_BYTES) return `target is ${bytes} bytes long; the limit is ${MAX_TARGET_BYTES}`;
  return null;
}

export function assertValidTarget(target: unknown): asserts target is string {
  const problem = targetProblem(target);
  if (problem) throw new ApiError('bad_target', problem);
}
