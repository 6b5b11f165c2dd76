import { MAX_NAME_BYTES } from '../../protocol/names.js';
import type { VersionInfo } from '../../protocol/types.js';
import { cutToBytes, splitExtension } from '../model/name-parts.js';

/** Room a device name may take (its first characters; the rest is dropped), as in conflicted copies. */
const MAX_DEVICE_BYTES = 64;
/** What a version shows when the server no longer knows the device that committed it. */
const UNKNOWN_DEVICE = 'unknown device';

/**
 * The name a version of a file has in `.stratus/versions/PATH/`:
 * `STEM vN YYYY-MM-DD HHMMSS DEVICE.EXT` — `report v3 2026-12-01 100000 laptop.txt` for version 3
 * of `report.txt`, committed at 10:00:00 local time by the device "laptop". The version number
 * tells versions apart (a name is unique in its folder); the commit time is in the machine's local
 * time, as `stratus versions` shows it and `.stratus/at/TIME` takes a time without a zone; the
 * extension stays last, so a program opens the
 * file as the kind it is. Always a valid name (NFC, ≤ 255 UTF-8 bytes, no `/` or NUL): a long stem
 * is cut between characters, a long device name shortened, an extension too long to fit given up.
 */
export function versionFileName(name: string, v: Pick<VersionInfo, 'version' | 'committed_at' | 'device_name'>): string {
  const full = name.normalize('NFC');
  let { stem, ext } = splitExtension(full);
  const device = cutToBytes((v.device_name ?? UNKNOWN_DEVICE).normalize('NFC').replace(/[/\0]/g, '_'), MAX_DEVICE_BYTES);
  const marker = ` v${v.version} ${stampOf(v.committed_at)} ${device}`;
  // An extension that leaves no room for a stem is taken as part of the stem.
  if (Buffer.byteLength(marker + ext) > MAX_NAME_BYTES - 16) {
    stem = full;
    ext = '';
  }
  const tail = marker + ext;
  return (cutToBytes(stem, MAX_NAME_BYTES - Buffer.byteLength(tail)) + tail).normalize('NFC');
}

/** `2026-12-01T10:00:00.000Z` → `2026-12-01 100000` (local time, to the second). */
function stampOf(iso: string): string {
  const d = new Date(iso);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}
