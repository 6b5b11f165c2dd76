import { cutToBytes, splitExtension } from './name-parts.js';

const MAX_NAME_BYTES = 255;
/** Room a device name may take in the marker (its first characters; the rest is dropped). */
const MAX_DEVICE_BYTES = 64;

/**
 * The name a losing edit is kept under (invariant 6):
 * `name (conflicted copy from DEVICE YYYY-MM-DD HHMMSS).ext`, next to the file.
 * The extension is what follows the last dot, unless the name starts with it (".bashrc").
 * The result is always a valid name (NFC, ≤ 255 UTF-8 bytes, no `/` or NUL): the stem is cut
 * between characters (never inside one), an over-long device name or extension is shortened.
 */
export function conflictedCopyName(name: string, device: string, when: Date, attempt = 0): string {
  const full = name.normalize('NFC');
  let { stem, ext } = splitExtension(full);
  const p = (n: number) => String(n).padStart(2, '0');
  const stamp = `${when.getFullYear()}-${p(when.getMonth() + 1)}-${p(when.getDate())} ${p(when.getHours())}${p(when.getMinutes())}${p(when.getSeconds())}`;
  const suffix = attempt > 0 ? ` ${attempt + 1}` : '';
  const safeDevice = cutToBytes(device.normalize('NFC').replace(/[/\0]/g, '_'), MAX_DEVICE_BYTES);
  const marker = ` (conflicted copy from ${safeDevice} ${stamp}${suffix})`;
  // An extension that leaves no room for a stem is treated as part of the stem.
  if (Buffer.byteLength(marker + ext) > MAX_NAME_BYTES - 16) {
    stem = full;
    ext = '';
  }
  const tail = marker + ext;
  return (cutToBytes(stem, MAX_NAME_BYTES - Buffer.byteLength(tail)) + tail).normalize('NFC');
}

/** The marker conflictedCopyName puts before the extension. */
const CONFLICTED_RE = / \(conflicted copy from .* \d{4}-\d{2}-\d{2} \d{6}(?: \d+)?\)(?:\.[^.]*)?$/u;

/** `name` is one conflictedCopyName makes (a losing edit kept as a copy). */
export function isConflictedCopyName(name: string): boolean {
  return CONFLICTED_RE.test(name);
}
