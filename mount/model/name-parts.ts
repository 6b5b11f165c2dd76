/**
 * Pieces of file names the drive builds names from (conflicted copies, version files): where the
 * extension starts, and how to shorten a part to a number of UTF-8 bytes without cutting a
 * character in two.
 */

/** The stem and the extension (from the last dot, kept with it): none when the name starts with its only dot (".bashrc") or ends with a dot. */
export function splitExtension(name: string): { stem: string; ext: string } {
  const dot = name.lastIndexOf('.');
  const hasExt = dot > 0 && dot < name.length - 1;
  return hasExt ? { stem: name.slice(0, dot), ext: name.slice(dot) } : { stem: name, ext: '' };
}

/** The longest prefix of `s` of whole code points within `max` UTF-8 bytes (at least one code point). */
export function cutToBytes(s: string, max: number): string {
  if (Buffer.byteLength(s) <= max) return s;
  let out = '';
  let bytes = 0;
  for (const ch of s) {
    const n = Buffer.byteLength(ch);
    if (bytes + n > max && out) break;
    out += ch;
    bytes += n;
  }
  return out;
}
