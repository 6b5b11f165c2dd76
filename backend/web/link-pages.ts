import type { NodeKind } from '../../protocol/types.js';

/**
 * The HTML of link shares (`/s/TOKEN…`, DESIGN §3): plain server-rendered pages, no script. Every
 * name a page shows goes through `escapeHtml`; every href is built here from the token (checked
 * base64url) and percent-encoded names. Pure functions of their input: the route decides what
 * may be shown (services/link-shares.ts, access.ts).
 */

/** Headers on every link-share response: nothing runs, nothing is sniffed, referred or cached. */
export const LINK_PAGE_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
};

/** The one answer to every link that opens nothing: unknown, revoked or expired token, a path not there (no oracle). */
export const NOT_FOUND_PAGE =
  '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>not found or expired</title></head><body><p>not found or expired</p></body></html>\n';

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text safe in HTML content and in quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]!);
}

/** The URL of a node under a link: `/s/TOKEN/NAME…`, each name percent-encoded; `?download=1` for a file's bytes. */
export function linkHref(token: string, names: readonly string[], download = false): string {
  return `/s/${token}${names.map((n) => `/${encodeURIComponent(n)}`).join('')}${download ? '?download=1' : ''}`;
}

/** `1.5 MiB`-style size (the exact count of bytes goes in a title). */
export function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

/** A modification time (ms) as `2024-05-01 12:34 UTC`. */
export function formatTime(ms: number): string {
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? '' : `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/**
 * `Content-Disposition` for a download of `name` (RFC 6266): `filename` an ASCII stand-in (other
 * characters, quotes, backslashes and `%` as `_`), `filename*` the exact name in UTF-8,
 * percent-encoded down to RFC 8187 attr-chars. Never a control character or a raw quote in the header.
 */
export function contentDisposition(name: string): string {
  const fallback = name.replace(/[^\x20-\x7e]|["\\%]/g, '_');
  const exact = encodeURIComponent(name).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `attachment; filename="${fallback}"; filename*=UTF-8''${exact}`;
}

/** One step of the path shown on top of a page: a name and its URL. */
export interface Crumb {
  name: string;
  href: string;
}

/** One row of a folder page. */
export interface ListingEntry {
  name: string;
  kind: NodeKind;
  size: number;
  mtime: number;
  /** The entry's page (folders and files); null for what a link cannot open (a symbolic link). */
  href: string | null;
  /** A file's bytes. */
  downloadHref: string | null;
}

const STYLE = `body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:60em;padding:0 1em;color:#222}
nav{margin-bottom:1em;color:#666}nav a{color:#0645ad}h1{font-size:1.4em;word-break:break-all}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #ddd;vertical-align:top}
td.name{word-break:break-all}td.num{white-space:nowrap}a{color:#0645ad}.kind{color:#888;font-size:.85em}
.more{color:#666;margin-top:1em}.download{display:inline-block;margin-top:1em;font-weight:600}`;

function page(title: string, trail: readonly Crumb[], body: string): string {
  const nav = trail.length > 1 ? `<nav>${trail.map((c, i) => (i < trail.length - 1 ? `<a href="${escapeHtml(c.href)}">${escapeHtml(c.name)}</a>` : escapeHtml(c.name))).join(' / ')}</nav>` : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta name="robots" content="noindex">
<title>${escapeHtml(title)}</title><style>${STYLE}</style></head>
<body>${nav}<h1>${escapeHtml(title)}</h1>
${body}
</body></html>
`;
}

function sizeCell(bytes: number): string {
  return `<td class="num" title="${bytes} bytes">${escapeHtml(formatSize(bytes))}</td>`;
}

/** A folder's page: its path from the shared folder, then its entries (folders first, then files, as given). */
export function folderPage(trail: readonly Crumb[], entries: readonly ListingEntry[], more: number): string {
  const title = trail[trail.length - 1]?.name ?? '';
  const rows = entries.map((e) => {
    const label = e.kind === 'dir' ? `${escapeHtml(e.name)}/` : escapeHtml(e.name);
    const name = e.href === null ? label : `<a href="${escapeHtml(e.href)}">${label}</a>`;
    const kind = e.kind === 'link' ? ' <span class="kind">(symbolic link)</span>' : '';
    const size = e.kind === 'file' ? sizeCell(e.size) : '<td class="num"></td>';
    const download = e.downloadHref === null ? '<td></td>' : `<td><a href="${escapeHtml(e.downloadHref)}">Download</a></td>`;
    return `<tr><td class="name">${name}${kind}</td>${size}<td class="num">${escapeHtml(formatTime(e.mtime))}</td>${download}</tr>`;
  });
  const table =
    entries.length === 0
      ? '<p>This folder is empty.</p>'
      : `<table><thead><tr><th>Name</th><th>Size</th><th>Modified</th><th></th></tr></thead><tbody>\n${rows.join('\n')}\n</tbody></table>`;
  const tail = more > 0 ? `\n<p class="more">${more} more ${more === 1 ? 'entry is' : 'entries are'} not shown.</p>` : '';
  return page(title, trail, table + tail);
}

/** A file's page: name, size, modification time and a Download link. */
export function filePage(trail: readonly Crumb[], file: { name: string; size: number; mtime: number }, downloadHref: string): string {
  const body = `<table><tbody>
<tr><th>Size</th>${sizeCell(file.size)}</tr>
<tr><th>Modified</th><td>${escapeHtml(formatTime(file.mtime))}</td></tr>
</tbody></table>
<a class="download" href="${escapeHtml(downloadHref)}">Download</a>`;
  return page(file.name, trail, body);
}
