import fs from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import type { StratusClient } from '../../protocol/client.js';
import type { NodeInfo } from '../../protocol/types.js';
import { raw, type RawResponse } from '../helpers/api-assert.js';
import { randomBlock, startTestBackend, stopOwnCluster, testEngines, type TestBackend, type TestUser } from '../helpers/backend.js';

/**
 * Link shares in a browser (DESIGN §3 sharing, §4 invariants 4 and 8, §5 `/s/:token`): without an
 * account, a link shows the shared folder (or file) and what is under it, and the bytes of its
 * files; nothing above or beside it, nothing in the trash; an unknown, revoked or expired token
 * are one and the same 404 page; every name is escaped and every answer carries the headers that
 * keep a page inert.
 */

t.teardown(stopOwnCluster);

const NOT_FOUND = 'not found or expired';
/** A hostile name (a name cannot hold `/`: the closing tag has a backslash). */
const EVIL = `<script>alert(1)<\\script>&"'`;
const EVIL_ESCAPED = '&lt;script&gt;alert(1)&lt;\\script&gt;&amp;&quot;&#39;';

const PAGE_HEADERS: Record<string, string> = {
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

interface Asserts {
  equal(found: unknown, wanted: unknown, message: string): unknown;
  notOk(found: unknown, message: string): unknown;
}

function assertPageHeaders(t: Asserts, res: RawResponse, what: string): void {
  for (const [name, value] of Object.entries(PAGE_HEADERS)) t.equal(res.headers.get(name), value, `${what}: ${name}`);
}

/** The answer must be the one not-found page: 404, and only "not found or expired" in it (and nothing of `secret`). */
function assertNotFound(t: Asserts, res: RawResponse, what: string, secret = 'secret'): void {
  t.equal(res.status, 404, `${what}: 404`);
  t.equal(res.text.replace(/<[^>]*>/g, ' ').trim().split(/\s+/).filter(Boolean).join(' '), `${NOT_FOUND} ${NOT_FOUND}`, `${what}: says only "${NOT_FOUND}" (title and text)`);
  t.notOk(res.text.includes(secret), `${what}: nothing of "${secret}"`);
}

function unescapeHtml(s: string): string {
  return s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, '&');
}

/** The rows of a folder page: each entry's shown name (unescaped, a folder's with its trailing `/`), its page link and its download link. */
function listing(html: string): Array<{ name: string; href: string | null; download: string | null; bytes: number | null }> {
  const rows = [...html.matchAll(/<tr><td class="name">(.*?)<\/tr>/g)].map((m) => m[1]!);
  return rows.map((row) => {
    const linked = /^<a href="([^"]*)">([^<]*)<\/a>/.exec(row);
    const plain = /^([^<]*)/.exec(row);
    const download = /<a href="([^"]*)">Download<\/a>/.exec(row);
    const bytes = /title="(\d+) bytes"/.exec(row);
    return {
      name: unescapeHtml(linked ? linked[2]! : plain![1]!).trim(),
      href: linked ? unescapeHtml(linked[1]!) : null,
      download: download ? unescapeHtml(download[1]!) : null,
      bytes: bytes ? Number(bytes[1]) : null,
    };
  });
}

/** Uploads these blocks (random bytes) and commits them as a new file's first version; returns the file and its bytes. */
async function fileWith(client: StratusClient, parentId: string, name: string, sizes: number[]): Promise<{ node: NodeInfo; bytes: Buffer; hashes: string[] }> {
  const node = await client.create({ parent_id: parentId, name, kind: 'file' });
  if (sizes.length === 0) return { node, bytes: Buffer.alloc(0), hashes: [] };
  const blocks = sizes.map((size) => randomBlock(size));
  for (const b of blocks) await client.putBlock(b.hash, b.bytes);
  await client.commit(node.id, { base_version: 0, blocks: blocks.map((b, i) => ({ hash: b.hash, size: sizes[i]! })), size: sizes.reduce((a, b) => a + b, 0) });
  return { node, bytes: Buffer.concat(blocks.map((b) => b.bytes)), hashes: blocks.map((b) => b.hash) };
}

/** `/s/TOKEN` of a share's url. */
function tokenOf(url: string | undefined): string {
  const m = /^\/s\/([A-Za-z0-9_-]{32})$/.exec(url ?? '');
  if (!m) throw new Error(`not a link url: ${url}`);
  return m[1]!;
}

for (const engine of testEngines()) {
  t.test(`link shares [${engine}]`, async (t) => {
    let backend: TestBackend = await startTestBackend(engine);
    t.teardown(() => backend.close());
    const alice: TestUser = await backend.addUser('alice');
    const c = alice.client;
    const root = await c.root();

    // alice's tree: Album (shared by link) beside Private (not shared) and solo.bin (a file shared by link).
    const album = await c.create({ parent_id: root.id, name: 'Album', kind: 'dir' });
    const priv = await c.create({ parent_id: root.id, name: 'Private', kind: 'dir' });
    await fileWith(c, priv.id, 'secret.txt', [50]);
    const sub = await c.create({ parent_id: album.id, name: 'sub', kind: 'dir' });
    const deep = await fileWith(c, sub.id, 'deep.txt', [1234]);
    // Three blocks, one of them bigger than the store's 1 MiB reads.
    const big = await fileWith(c, album.id, 'b.bin', [100_000, 2_000_000, 7]);
    const evil = await fileWith(c, album.id, EVIL, [321]);
    const odd = await fileWith(c, album.id, '50% off #1?.txt', [11]);
    const pct = await fileWith(c, album.id, '%41', [12]);
    const letterA = await fileWith(c, album.id, 'A', [13]);
    await fileWith(c, album.id, 'empty', []);
    await c.create({ parent_id: album.id, name: 'zz', kind: 'dir' });
    await c.create({ parent_id: album.id, name: 'ln', kind: 'link', target: '../Private/secret.txt' });
    const trashed = await fileWith(c, album.id, 'trashed.txt', [40]);
    await c.remove(trashed.node.id);
    const old = await c.create({ parent_id: album.id, name: 'old', kind: 'dir' });
    await fileWith(c, old.id, 'inner.txt', [41]);
    await c.remove(old.id);
    const solo = await fileWith(c, root.id, 'solo.bin', [5000, 3000]);

    const albumLink = await c.share(album.id, { link: true });
    const token = tokenOf(albumLink.url);
    const soloToken = tokenOf((await c.share(solo.node.id, { link: true })).url);

    t.test('a folder link lists exactly the folder\'s live children — folders first, then files, by name — with links, sizes, and every name escaped', async (t) => {
      const res = await raw(backend, 'GET', `/s/${token}`);
      t.equal(res.status, 200);
      t.match(res.headers.get('content-type'), /^text\/html; charset=utf-8/);
      t.match(res.text, /<title>Album<\/title>/, 'titled with the shared folder\'s name');
      const rows = listing(res.text);
      t.same(
        rows.map((r) => r.name),
        ['sub/', 'zz/', '%41', '50% off #1?.txt', EVIL, 'A', 'b.bin', 'empty', 'ln'],
        'folders, then the rest by name (code point order); nothing trashed, nothing from above or beside',
      );
      t.ok(res.text.includes(EVIL_ESCAPED), 'the evil name is shown escaped');
      t.notOk(res.text.includes('<script'), 'no markup from a name gets through');
      t.notOk(/Private|secret|trashed|inner|old\//.test(res.text), 'nothing of the sibling folder or the trash, nor a link\'s target');
      const byName = new Map(rows.map((r) => [r.name, r]));
      t.same(byName.get('sub/'), { name: 'sub/', href: `/s/${token}/sub`, download: null, bytes: null }, 'a folder: a link, no size, no download');
      t.same(byName.get('b.bin'), { name: 'b.bin', href: `/s/${token}/b.bin`, download: `/s/${token}/b.bin?download=1`, bytes: big.bytes.length }, 'a file: a link, its size and a Download link');
      t.equal(byName.get(EVIL)!.href, `/s/${token}/${encodeURIComponent(EVIL)}`, 'hrefs are percent-encoded names');
      t.equal(byName.get('ln')!.href, null, 'a symbolic link is listed but not followed');
      assertPageHeaders(t, res, 'folder page');
    });

    t.test('a file page shows name, size, modified time and a Download link; the download is the file\'s exact bytes across its blocks', async (t) => {
      const page = await raw(backend, 'GET', `/s/${token}/b.bin`);
      t.equal(page.status, 200);
      t.match(page.text, /<h1>b\.bin<\/h1>/, 'name');
      t.match(page.text, new RegExp(`title="${big.bytes.length} bytes">2\\.0 MiB<`), 'size');
      const mtime = (await c.node(big.node.id)).mtime;
      t.ok(page.text.includes(new Date(mtime).toISOString().slice(0, 16).replace('T', ' ')), 'modified time');
      t.match(page.text, new RegExp(`<a class="download" href="/s/${token}/b\\.bin\\?download=1">Download</a>`), 'Download link');
      assertPageHeaders(t, page, 'file page');

      const res = await backend.fetch(`/s/${token}/b.bin?download=1`);
      t.equal(res.status, 200);
      const bytes = Buffer.from(await res.arrayBuffer());
      t.equal(bytes.length, big.bytes.length, 'length');
      t.ok(bytes.equals(big.bytes), 'exactly the bytes of its three blocks, in order');
      t.equal(res.headers.get('content-type'), 'application/octet-stream');
      t.equal(res.headers.get('content-length'), String(big.bytes.length));
      t.equal(res.headers.get('content-disposition'), `attachment; filename="b.bin"; filename*=UTF-8''b.bin`);
      for (const [name, value] of Object.entries(PAGE_HEADERS)) t.equal(res.headers.get(name), value, `download: ${name}`);

      const head = await raw(backend, 'HEAD', `/s/${token}/b.bin?download=1`);
      t.equal(head.status, 200, 'HEAD of a download');
      t.equal(head.headers.get('content-length'), String(big.bytes.length), 'HEAD: the length');
      t.equal(head.text, '', 'HEAD: no body');

      const empty = await raw(backend, 'GET', `/s/${token}/empty?download=1`);
      t.equal(empty.status, 200, 'a file never written downloads');
      t.equal(empty.headers.get('content-length'), '0', 'as no bytes');
    });

    t.test('a download\'s Content-Disposition names the file safely (RFC 6266), also a hostile name', async (t) => {
      const res = await raw(backend, 'GET', `/s/${token}/${encodeURIComponent(EVIL)}?download=1`);
      t.equal(res.status, 200);
      t.equal(res.text, evil.bytes.toString('utf8'), 'its bytes');
      t.equal(res.headers.get('content-disposition'), `attachment; filename="<script>alert(1)<_script>&_'"; filename*=UTF-8''%3Cscript%3Ealert%281%29%3C%5Cscript%3E%26%22%27`);
      const page = await raw(backend, 'GET', `/s/${token}/${encodeURIComponent(EVIL)}`);
      t.ok(page.text.includes(`<h1>${EVIL_ESCAPED}</h1>`) && !page.text.includes('<script'), 'the file page escapes it too');
    });

    t.test('subpaths: a folder under the link lists its children; names are percent-decoded exactly once', async (t) => {
      const res = await raw(backend, 'GET', `/s/${token}/sub`);
      t.equal(res.status, 200);
      t.same(listing(res.text).map((r) => [r.name, r.href]), [['deep.txt', `/s/${token}/sub/deep.txt`]], 'sub lists deep.txt');
      t.match(res.text, new RegExp(`<nav><a href="/s/${token}">Album</a> / sub</nav>`), 'the path from the shared folder, linked');
      const down = await backend.fetch(`/s/${token}/sub/deep.txt?download=1`);
      t.ok(Buffer.from(await down.arrayBuffer()).equals(deep.bytes), 'a file two levels down downloads');

      // Following the listing's own links works for names that need encoding.
      const rows = listing((await raw(backend, 'GET', `/s/${token}`)).text);
      const oddRow = rows.find((r) => r.name === '50% off #1?.txt')!;
      t.equal(oddRow.download, `/s/${token}/50%25%20off%20%231%3F.txt?download=1`);
      t.equal((await raw(backend, 'GET', oddRow.download!)).text, odd.bytes.toString('utf8'), '%, space, # and ? in a name');
      t.equal((await raw(backend, 'GET', `/s/${token}/%2541?download=1`)).text, pct.bytes.toString('utf8'), '%2541 is the file "%41"…');
      t.equal((await raw(backend, 'GET', `/s/${token}/%41?download=1`)).text, letterA.bytes.toString('utf8'), '…and %41 the file "A"');
    });

    t.test('a file link shows the file and downloads it; it has nothing under it', async (t) => {
      const page = await raw(backend, 'GET', `/s/${soloToken}`);
      t.equal(page.status, 200);
      t.match(page.text, /<h1>solo\.bin<\/h1>/);
      t.match(page.text, new RegExp(`href="/s/${soloToken}\\?download=1">Download<`));
      const res = await backend.fetch(`/s/${soloToken}?download=1`);
      t.ok(Buffer.from(await res.arrayBuffer()).equals(solo.bytes), 'its exact bytes');
      assertNotFound(t, await raw(backend, 'GET', `/s/${soloToken}/x`), 'a name under a file');
      assertNotFound(t, await raw(backend, 'GET', `/s/${soloToken}/..`), '.. from a file link');
      assertNotFound(t, await raw(backend, 'GET', `/s/${soloToken}/../Private/secret.txt?download=1`), '../Private from a file link');
    });

    t.test('nothing above or beside the shared folder is reachable, however the path is spelled', async (t) => {
      const spellings = [
        'Private',
        'Private/secret.txt',
        'secret.txt',
        '..',
        '../Private',
        '../Private/secret.txt',
        'sub/../../Private/secret.txt',
        '%2e%2e/Private/secret.txt',
        '%2E%2E',
        '.%2e/Private',
        '..%2FPrivate%2Fsecret.txt',
        '%2e%2e%2fPrivate%2fsecret.txt',
        'sub%2F..%2F..%2FPrivate',
        '%252e%252e/Private',
        '.',
        './sub',
        '',
        'sub/',
        '/Private',
        '/../Private',
        'sub//deep.txt',
        '..%5CPrivate%5Csecret.txt',
        '%5C..%5CPrivate',
        '%00',
        'sub%00',
        'Private%00',
        '%C0%AE%C0%AE/Private',
        '%E0%A4%A',
        'ln',
        'ln/x',
      ];
      for (const s of spellings) {
        assertNotFound(t, await raw(backend, 'GET', `/s/${token}/${s}`), `/s/TOKEN/${s}`);
        assertNotFound(t, await raw(backend, 'GET', `/s/${token}/${s}?download=1`), `/s/TOKEN/${s}?download=1`);
      }
      // A raw backslash or NUL in the request line: refused by the HTTP parser, or the same 404.
      for (const s of ['..\\Private\\secret.txt', '..\\..\\Private']) {
        const res = await raw(backend, 'GET', `/s/${token}/${s}?download=1`).catch(() => undefined);
        if (res && res.status !== 400) assertNotFound(t, res, `raw backslashes ${s}`);
        else t.pass(`raw backslashes ${s}: refused (${res?.status ?? 'connection closed'})`);
      }
      // The token itself spelled otherwise, or a path that only looks like a link's.
      for (const p of [`/s/${token}%2F..%2FPrivate`, `/s/..%2F${token}`, `/s//${token}`, `/s/%2e%2e/${token}`]) {
        assertNotFound(t, await raw(backend, 'GET', p), p);
      }
      const parent = await raw(backend, 'GET', `/s/${token}/..`);
      assertPageHeaders(t, parent, 'the not-found page');
    });

    t.test('unknown, malformed, revoked and expired tokens all give the identical 404 page', async (t) => {
      const other = await c.create({ parent_id: root.id, name: 'Other', kind: 'dir' });
      await fileWith(c, other.id, 'other-secret.txt', [9]);
      const revoked = await c.share(other.id, { link: true });
      const revokedToken = tokenOf(revoked.url);
      const expiring = await c.create({ parent_id: root.id, name: 'Expiring', kind: 'dir' });
      await fileWith(c, expiring.id, 'other-secret.txt', [9]);
      const expired = await c.share(expiring.id, { link: true, expires_at: Date.now() + 3_600_000 });
      const expiredToken = tokenOf(expired.url);
      for (const tk of [revokedToken, expiredToken]) t.equal((await raw(backend, 'GET', `/s/${tk}/other-secret.txt`)).status, 200, 'the link works at first');

      await c.unshare(other.id, revoked.id);
      await backend.db('shares').where({ public_id: expired.id }).update({ expires_at: Date.now() - 1 });

      const unknown = 'A'.repeat(32);
      const answers: Array<[string, RawResponse]> = [];
      for (const [what, tk] of [['unknown', unknown], ['revoked', revokedToken], ['expired', expiredToken], ['31 chars', token.slice(1)], ['33 chars', `${token}A`], ['padded', `${token.slice(0, 31)}=`], ['percent-encoded', `%${token.charCodeAt(0).toString(16)}${token.slice(1)}`], ['empty', '']] as const) {
        for (const suffix of ['', '/other-secret.txt', '/other-secret.txt?download=1']) {
          const res = await raw(backend, 'GET', `/s/${tk}${suffix}`);
          assertNotFound(t, res, `${what} token${suffix}`, 'other-secret');
          answers.push([`${what}${suffix}`, res]);
        }
      }
      const [first] = answers;
      for (const [what, res] of answers) {
        t.equal(res.text, first![1].text, `${what}: the same body`);
        t.equal(res.headers.get('content-type'), first![1].headers.get('content-type'), `${what}: the same type`);
        t.equal(res.headers.get('content-length'), first![1].headers.get('content-length'), `${what}: the same length`);
        assertPageHeaders(t, res, what);
      }
    });

    t.test('the trash: a trashed file or folder is not listed, not shown, not downloadable; a trashed shared folder opens nothing; restored, they are back', async (t) => {
      for (const p of ['trashed.txt', 'trashed.txt?download=1', 'old', 'old/inner.txt', 'old/inner.txt?download=1']) {
        assertNotFound(t, await raw(backend, 'GET', `/s/${token}/${p}`), p, 'inner');
      }
      await c.remove(sub.id);
      t.notOk(listing((await raw(backend, 'GET', `/s/${token}`)).text).some((r) => r.name === 'sub/'), 'a folder trashed now leaves the listing');
      assertNotFound(t, await raw(backend, 'GET', `/s/${token}/sub/deep.txt?download=1`), 'and what is in it is gone from the link');
      await c.restore(sub.id);
      t.equal((await raw(backend, 'GET', `/s/${token}/sub/deep.txt?download=1`)).status, 200, 'restored, it is back');

      await c.remove(album.id);
      for (const p of ['', '/b.bin', '/b.bin?download=1']) assertNotFound(t, await raw(backend, 'GET', `/s/${token}${p}`), `shared folder in the trash: ${p || '/'}`);
      await c.restore(album.id);
      t.equal((await raw(backend, 'GET', `/s/${token}`)).status, 200, 'restored, the link opens it again');
    });

    t.test('a link needs no account and gives none: the token is no bearer token, and HEAD answers like GET', async (t) => {
      const res = await raw(backend, 'GET', '/v1/nodes/root', { token });
      t.equal(res.status, 401, 'the link token does not open the API');
      const head = await raw(backend, 'HEAD', `/s/${token}`);
      t.equal(head.status, 200);
      t.equal(head.text, '');
      t.match(head.headers.get('content-type'), /^text\/html/);
      assertPageHeaders(t, head, 'HEAD');
    });

    t.test('blocks not yet checked by this server process are checked as they are served: good ones download whole, a damaged one cuts the download short', async (t) => {
      backend = await backend.restart();
      const res = await backend.fetch(`/s/${token}/b.bin?download=1`);
      t.ok(Buffer.from(await res.arrayBuffer()).equals(big.bytes), 'the exact bytes after a restart');

      backend = await backend.restart();
      const victim = big.hashes[1]!;
      const file = path.join(backend.dataDir, 'blocks', victim.slice(0, 2), victim.slice(2, 4), victim);
      const damaged = await fs.readFile(file);
      damaged[10] = damaged[10]! ^ 0xff;
      await fs.writeFile(file, damaged);
      try {
        const res = await backend.fetch(`/s/${token}/b.bin?download=1`);
        const got = Buffer.from(await res.arrayBuffer());
        t.fail(`a complete-looking body: ${res.status}, ${got.length} bytes`);
      } catch (err) {
        t.pass(`the download was cut: ${(err as Error).message}`);
      }
    });
  });
}
