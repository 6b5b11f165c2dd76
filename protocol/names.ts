import { ApiError } from './errors.js';

export const MAX_NAME_BYTES = 255;

/** Why `name` cannot be a node name, or null when it can (DESIGN §3: NFC, 1–255 UTF-8 bytes, no `/`, no NUL, not `.`/`..`). */
export function nameProblem(name: unknown): string | null {
  if (typeof name !== 'string') return 'name must be a string';
  if (name.length === 0) return 'name must not be empty';
  if (name === '.' || name === '..') return `name must not be "${name}"`;
  if (name.includes('/')) return 'name must not contain "/"';
  if (name.includes('\0')) return 'name must not contain NUL';
  if (!isWellFormed(name)) return 'name must be valid Unicode';
  if (name.normalize('NFC') !== name) return 'name must be in Unicode NFC';
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > MAX_NAME_BYTES) return `name is ${bytes} bytes long; the limit is ${MAX_NAME_BYTES}`;
  return null;
}

export function assertValidName(name: unknown): asserts name is string {
  const problem = nameProblem(name);
  if (problem) throw new ApiError('bad_name', problem);
}

/** True when the string has no lone surrogates (String.prototype.isWellFormed is Node 20+ but not in every lib typing). */
export function isWellFormed(s: string): boolean {
  return !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);
}
