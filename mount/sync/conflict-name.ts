/**
 * The name a losing edit is kept under (invariant 6):
 * `name (conflicted copy from DEVICE YYYY-MM-DD HHMMSS).ext`, next to the file.
 * The extension is what follows the last dot, unless the name starts with it (".bashrc").
 */
export function conflictedCopyName(name: string, device: string, when: Date, attempt = 0): string {
  const dot = name.lastIndexOf('.');
  const hasExt = dot > 0 && dot < name.length - 1;
  const stem = hasExt ? name.slice(0, dot) : name;
  const ext = hasExt ? name.slice(dot) : '';
  const p = (n: number) => String(n).padStart(2, '0');
  const stamp = `${when.getFullYear()}-${p(when.getMonth() + 1)}-${p(when.getDate())} ${p(when.getHours())}${p(when.getMinutes())}${p(when.getSeconds())}`;
  const suffix = attempt > 0 ? ` ${attempt + 1}` : '';
  const safeDevice = device.replace(/[/\0]/g, '_');
  const tail = ` (conflicted copy from ${safeDevice} ${stamp}${suffix})${ext}`;
  // Keep the whole name within 255 bytes by shortening the stem.
  let s = stem;
  while (Buffer.byteLength(s + tail) > 255 && s.length > 1) s = s.slice(0, -1);
  return (s + tail).normalize('NFC');
}
