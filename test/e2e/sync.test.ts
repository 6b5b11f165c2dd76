import fs from 'node:fs/promises';
import t, { type Test } from 'tap';
import { MiB, prng } from '../helpers/bigdata.js';
import { canonical, eventually, mountDrive, remoteNode, sh, startServerProcess, treeLink, treeOf, treeValue, type Drive } from '../helpers/drive.js';
import { startProxy } from '../helpers/proxy.js';
import type { StratusClient } from '../../protocol/client.js';
import { blake3Hex } from '../../protocol/hash.js';

/*
 * Live sync between drives of one user (issue 4): one `stratus serve` process, drives A and B
 * (and C for the first test) as `stratus mount` processes, each its own device token, --device
 * name and cache folder. What one drive does shows up on the others with no action there: every
 * check reads through the other drive's mount with fresh opens (listing, content, absence) and
 * polls until it holds (20 s at most; it normally takes well under a second).
 *
 * Concurrent edits follow the conflict rules of DESIGN §4 (invariant 6). To make two edits
 * concurrent, B reaches the server through a TCP proxy (test/helpers/proxy.ts) the test can cut:
 * B is taken offline, A changes the file (and the server has it), B changes it offline (queued:
 * edits, creates, deletes, renames), B comes back. Each rule is tried both ways round where both
 * orders mean something (edit vs delete, edit vs rename, folder delete vs a file added in it).
 * The resulting tree, names and bytes, is checked on BOTH drives in the same poll.
 *
 * This process only uses async fs calls and async child processes against the mounts.
 */

const server = await startServerProcess(t);
const alice = await server.addUser('alice');
const [devA, devB, devC] = [await server.addDevice('alice', 'devA'), await server.addDevice('alice', 'devB'), await server.addDevice('alice', 'devC')];
const proxy = await startProxy(t, server.url);
const a = await mountDrive(t, server, devA.token, { device: 'devA', drainTimeout: 5 });
const b = await mountDrive(t, server, devB.token, { device: 'devB', serverUrl: proxy.url, drainTimeout: 5 });

/** `name (conflicted copy from DEVICE YYYY-MM-DD HHMMSS).ext` */
function conflictRe(stem: string, ext: string, device = '[^()]+'): RegExp {
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${esc(stem)} \\(conflicted copy from ${device} \\d{4}-\\d{2}-\\d{2} \\d{6}\\)${esc(ext)}$`);
}

type Tree = Record<string, string>;
const show = canonical;

/** Waits until `dir` on every drive shows exactly `expected`; asserts it (with the time it took). */
async function converge(t: Test, drives: Drive[], dir: string, expected: Tree, what: string): Promise<void> {
  const started = Date.now();
  await Promise.all(
    drives.map(async (d) => {
      const seen = await eventually(`${what}: ${d.mountpoint}/${dir} to be ${show(expected)}`, () => treeOf(d.p(dir)), (tree) => show(tree) === show(expected)).catch(
        (err: Error) => err,
      );
      if (seen instanceof Error) t.fail(seen.message);
      else t.same(seen, expected, `${what}: ${name(d)} shows it (${Date.now() - started} ms)`);
    }),
  );
}

/** Waits until every drive shows `dir` as a tree that satisfies `ok` and is the same on all of them; returns it. */
async function settle(t: Test, drives: Drive[], dir: string, ok: (tree: Tree) => boolean, what: string): Promise<Tree | undefined> {
  const started = Date.now();
  try {
    const trees = await eventually(
      `${what}: ${dir} on ${drives.map(name).join(', ')}`,
      () => Promise.all(drives.map((d) => treeOf(d.p(dir)))),
      (trees) => trees.every(ok) && trees.every((tr) => show(tr) === show(trees[0]!)),
    );
    t.pass(`${what}: the same on ${drives.map(name).join(' and ')} (${Date.now() - started} ms): ${show(trees[0]!)}`);
    return trees[0];
  } catch (err) {
    t.fail((err as Error).message);
    return undefined;
  }
}

/** Waits until `dir` (or a file) is gone on every drive: stat ENOENT and not listed by its parent. */
async function gone(t: Test, drives: Drive[], rel: string, what: string): Promise<void> {
  const parent = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '';
  const base = rel.slice(rel.lastIndexOf('/') + 1);
  await Promise.all(
    drives.map(async (d) => {
      const absent = async () => {
        const listed = (await fs.readdir(d.p(parent))).includes(base);
        const code = await fs.stat(d.p(rel)).then(
          () => 'exists',
          (err: NodeJS.ErrnoException) => err.code,
        );
        return { listed, code };
      };
      const seen = await eventually(`${what}: ${rel} gone from ${name(d)}`, absent, (s) => !s.listed && s.code === 'ENOENT').catch((err: Error) => err);
      if (seen instanceof Error) t.fail(seen.message);
      else t.pass(`${what}: ${rel} is gone from ${name(d)}`);
    }),
  );
}

const names = new Map<Drive, string>();
const name = (d: Drive) => names.get(d) ?? d.mountpoint;
names.set(a, 'A');
names.set(b, 'B');

/** The bytes of the head version of a file, straight from the server. */
async function remoteBytes(client: StratusClient, p: string): Promise<Buffer | undefined> {
  const node = await remoteNode(client, p);
  if (!node || node.kind !== 'file') return undefined;
  const manifest = await client.manifest(node.id);
  return Buffer.concat(await Promise.all(manifest.blocks.map((x) => client.getBlock(x.hash))));
}

/** Waits until the server has `p` with these bytes (A's change landed), or has no `p` when `bytes` is undefined. */
async function onServer(p: string, bytes: string | undefined): Promise<void> {
  await eventually(
    `the server to have ${p} ${bytes === undefined ? 'gone' : `= ${JSON.stringify(bytes)}`}`,
    async () => (bytes === undefined ? (await remoteNode(alice.client, p)) === undefined : (await remoteBytes(alice.client, p))?.toString() === bytes),
    (v) => v,
  );
}

/** Runs `fn` with B cut off from the server (the proxy resets every connection); B is back afterwards, whatever happens. */
async function withBOffline<T>(fn: () => Promise<T>): Promise<T> {
  proxy.pause('refuse');
  try {
    return await fn();
  } finally {
    proxy.resume();
  }
}

/**
 * Wherever a file ends up (its folder recreated, or the top of the drive), a `find` over the whole
 * drive finds it, with `content`, once on A and once on B, at the same path.
 */
async function survives(t: Test, pattern: string, content: string): Promise<void> {
  const where = async (d: Drive) => {
    const found = (await sh(`find . -type f -name '${pattern}' -print0`, d.mountpoint)).split('\0').filter(Boolean);
    const hits: string[] = [];
    for (const f of found) if ((await fs.readFile(d.p(f), 'utf8').catch(() => '')) === content) hits.push(f);
    return hits;
  };
  const started = Date.now();
  const seen = await eventually(
    'the added file on A and B',
    () => Promise.all([where(a), where(b)]),
    ([onA, onB]) => onA.length === 1 && onB.length === 1 && onA[0] === onB[0],
  ).catch((err: Error) => err);
  if (seen instanceof Error) return void t.fail(seen.message);
  t.pass(`the file survives at ${seen[0][0]} on A and B (${Date.now() - started} ms)`);
}

t.test('create, edit, rename, move, delete, mkdir, rmdir on A appear on B and C with no action there', async (t) => {
  const c = await mountDrive(t, server, devC.token, { device: 'devC', drainTimeout: 5 });
  names.set(c, 'C');
  const others = [b, c];
  const dir = 'live';
  const tree: Tree = {};
  const step = (what: string) => converge(t, others, dir, tree, what);

  await fs.mkdir(a.p(dir));
  await step('mkdir');

  await fs.writeFile(a.p(dir, 'a.txt'), 'hello\n');
  tree['a.txt'] = 'hello\n';
  await step('create a small file');

  await fs.writeFile(a.p(dir, 'a.txt'), 'HELLO\n');
  tree['a.txt'] = 'HELLO\n';
  await step('edit, same size');

  await fs.writeFile(a.p(dir, 'a.txt'), 'hello, world: a longer line now\n');
  tree['a.txt'] = 'hello, world: a longer line now\n';
  await step('edit, another size');

  await fs.writeFile(a.p(dir, 'a.txt'), 'hi\n');
  tree['a.txt'] = 'hi\n';
  await step('edit, shorter');

  const big1 = prng('sync-big-1')(3 * MiB + 777);
  await fs.writeFile(a.p(dir, 'big.bin'), big1);
  tree['big.bin'] = treeValue(big1);
  await step('create a file of several blocks');

  const big2 = Buffer.from(big1);
  prng('sync-big-2')(64 * 1024).copy(big2, 2 * MiB);
  await fs.writeFile(a.p(dir, 'big.bin'), big2);
  tree['big.bin'] = treeValue(big2);
  await step('edit 64 KiB in the middle of it, same size');

  await fs.rename(a.p(dir, 'a.txt'), a.p(dir, 'b.txt'));
  tree['b.txt'] = tree['a.txt']!;
  delete tree['a.txt'];
  await step('rename');

  await fs.mkdir(a.p(dir, 'sub'));
  tree['sub/'] = '<dir>';
  await step('mkdir in a folder');

  await fs.rename(a.p(dir, 'b.txt'), a.p(dir, 'sub', 'b.txt'));
  tree['sub/b.txt'] = tree['b.txt']!;
  delete tree['b.txt'];
  await step('move to another folder');

  await fs.rename(a.p(dir, 'big.bin'), a.p(dir, 'sub', 'moved.bin'));
  tree['sub/moved.bin'] = tree['big.bin']!;
  delete tree['big.bin'];
  await step('move and rename at once');

  await fs.rm(a.p(dir, 'sub', 'b.txt'));
  delete tree['sub/b.txt'];
  await step('delete a file');
  await gone(t, others, `${dir}/sub/b.txt`, 'delete');

  await fs.rm(a.p(dir, 'sub', 'moved.bin'));
  delete tree['sub/moved.bin'];
  await fs.rmdir(a.p(dir, 'sub'));
  delete tree['sub/'];
  await step('delete the other file, rmdir');
  await gone(t, others, `${dir}/sub`, 'rmdir');

  await fs.rmdir(a.p(dir));
  await gone(t, others, dir, 'rmdir of the top folder');
  t.same(await treeOf(a.mountpoint), await treeOf(b.mountpoint), 'A and B show the same drive');
});

t.test('the kernel caches names and attributes for 30 s, yet what A changes is what stat on B says at once: a mode, a size, a name renamed or removed, a folder removed', async (t) => {
  const dir = 'kernel-cache';
  await fs.mkdir(a.p(dir));
  await fs.mkdir(a.p(dir, 'sub'));
  await fs.writeFile(a.p(dir, 'f.txt'), 'one\n');
  await fs.writeFile(a.p(dir, 'sub', 'g.txt'), 'two\n');
  await converge(t, [a, b], dir, { 'f.txt': 'one\n', 'sub/': '<dir>', 'sub/g.txt': 'two\n' }, 'the base');
  // B's kernel now holds these names and attributes (stat answered by the drive once, then cached).
  const statB = (rel: string) =>
    fs.stat(b.p(dir, rel)).then(
      (st) => ({ mode: st.mode & 0o777, size: st.size }),
      (err: NodeJS.ErrnoException) => err.code,
    );
  t.same(await statB('f.txt'), { mode: 0o644, size: 4 });
  await statB('sub/g.txt');
  const seen = async (what: string, rel: string, wanted: unknown) => {
    const started = Date.now();
    const got = await eventually(`${what} on B`, () => statB(rel), (v) => JSON.stringify(v) === JSON.stringify(wanted), 10_000).catch((err: Error) => err);
    if (got instanceof Error) t.fail(got.message);
    else t.pass(`${what}: B's stat says so after ${Date.now() - started} ms`);
  };
  await fs.chmod(a.p(dir, 'f.txt'), 0o600);
  await seen('a mode changed on A', 'f.txt', { mode: 0o600, size: 4 });
  await fs.writeFile(a.p(dir, 'f.txt'), 'longer now\n');
  await seen('a size changed on A', 'f.txt', { mode: 0o600, size: 11 });
  await fs.rename(a.p(dir, 'f.txt'), a.p(dir, 'h.txt'));
  await seen('a file renamed on A: the old name', 'f.txt', 'ENOENT');
  await seen('… and the new one', 'h.txt', { mode: 0o600, size: 11 });
  await fs.rm(a.p(dir, 'sub'), { recursive: true });
  await seen('a folder removed on A: a file that was in it', 'sub/g.txt', 'ENOENT');
  await seen('… and the folder', 'sub', 'ENOENT');
  await fs.writeFile(a.p(dir, 'f.txt'), 'a new f\n');
  await seen('a new file under the first name', 'f.txt', { mode: 0o644, size: 8 });
  t.equal(await fs.readFile(b.p(dir, 'f.txt'), 'utf8'), 'a new f\n', 'B reads the new file under that name');
});

t.test('a file open for reading on B keeps its version while A replaces it; a fresh open sees the new one', async (t) => {
  const dir = 'pinned';
  const file = `${dir}/doc.bin`;
  const size = 2 * MiB + 4321;
  const v1 = prng('pin-v1')(size);
  const v2 = prng('pin-v2')(size);
  await fs.mkdir(a.p(dir));
  await fs.writeFile(a.p(file), v1);
  await converge(t, [b], dir, { 'doc.bin': treeValue(v1) }, 'version 1');

  const fh = await fs.open(b.p(file), 'r');
  try {
    const head = Buffer.alloc(64 * 1024);
    await fh.read(head, 0, head.length, 0);
    t.same(head, v1.subarray(0, head.length), 'the open handle reads version 1');
    const before = await fs.stat(b.p(file));
    const node = await remoteNode(alice.client, file);

    await fs.writeFile(a.p(file), v2);
    await eventually('version 2 on the server', () => remoteNode(alice.client, file), (n) => (n?.head_version ?? 0) > (node?.head_version ?? 0));
    // B has applied the new version (its attributes changed) while the handle is still open.
    await eventually('B to know of version 2', () => fs.stat(b.p(file)), (st) => st.mtimeMs !== before.mtimeMs);

    const rest = Buffer.alloc(size - head.length);
    let done = 0;
    for (;;) {
      const { bytesRead } = await fh.read(rest, done, rest.length - done, head.length + done);
      if (bytesRead === 0 || (done += bytesRead) === rest.length) break;
    }
    t.equal(done, rest.length, 'the open handle reads to the end of version 1');
    t.ok(rest.equals(v1.subarray(head.length)), 'the open handle keeps reading version 1 (no mix of versions)');
  } finally {
    await fh.close();
  }
  await converge(t, [b], dir, { 'doc.bin': treeValue(v2) }, 'a fresh open on B reads version 2');
});

t.test('conflict: two devices commit on the same base: the later one becomes a conflicted copy, on both drives', async (t) => {
  const dir = 'same-base';
  await fs.mkdir(a.p(dir));
  await fs.writeFile(a.p(dir, 'doc.txt'), 'base\n');
  await converge(t, [a, b], dir, { 'doc.txt': 'base\n' }, 'the base');

  await withBOffline(async () => {
    await fs.writeFile(a.p(dir, 'doc.txt'), 'from A\n');
    await onServer(`${dir}/doc.txt`, 'from A\n');
    await fs.writeFile(b.p(dir, 'doc.txt'), 'from B, offline\n');
    t.equal(await fs.readFile(b.p(dir, 'doc.txt'), 'utf8'), 'from B, offline\n', 'offline, B shows its own edit');
  });

  const re = conflictRe('doc', '.txt', 'devB');
  const tree = await settle(
    t,
    [a, b],
    dir,
    (tr) => Object.keys(tr).length === 2 && tr['doc.txt'] === 'from A\n' && Object.keys(tr).some((k) => re.test(k)),
    'A and B converge',
  );
  if (!tree) return;
  const copy = Object.keys(tree).find((k) => re.test(k))!;
  t.equal(tree['doc.txt'], 'from A\n', 'the first commit keeps the name');
  t.equal(tree[copy], 'from B, offline\n', `the later commit (B's) is kept as "${copy}"`);
});

t.test('conflict: edit on one device, delete on the other: the edit survives, on both drives', async (t) => {
  const dir = 'edit-delete';
  await fs.mkdir(a.p(dir));
  await fs.writeFile(a.p(dir, 'keep.txt'), 'base\n');
  await converge(t, [a, b], dir, { 'keep.txt': 'base\n' }, 'the base');

  await withBOffline(async () => {
    await fs.rm(a.p(dir, 'keep.txt'));
    await onServer(`${dir}/keep.txt`, undefined);
    await fs.writeFile(b.p(dir, 'keep.txt'), 'edited on B\n');
  });
  await settle(t, [a, b], dir, (tr) => show(tr) === show({ 'keep.txt': 'edited on B\n' }), 'the edited file is kept on both');
});

t.test('conflict: rename on one device, edit on the other: the edit lands in the renamed file, on both drives', async (t) => {
  const dir = 'rename-edit';
  await fs.mkdir(a.p(dir));
  await fs.writeFile(a.p(dir, 'old.txt'), 'base\n');
  await converge(t, [a, b], dir, { 'old.txt': 'base\n' }, 'the base');

  await withBOffline(async () => {
    await fs.rename(a.p(dir, 'old.txt'), a.p(dir, 'new.txt'));
    await onServer(`${dir}/new.txt`, 'base\n');
    await fs.writeFile(b.p(dir, 'old.txt'), 'edited on B\n');
  });
  await settle(t, [a, b], dir, (tr) => show(tr) === show({ 'new.txt': 'edited on B\n' }), 'new name, edited content, old name gone, on both');
});

t.test('conflict, the other way round: delete on B (offline, queued), edit on A: the edit survives, on both drives', async (t) => {
  const dir = 'delete-edit';
  await fs.mkdir(a.p(dir));
  await fs.writeFile(a.p(dir, 'keep.txt'), 'base\n');
  await converge(t, [a, b], dir, { 'keep.txt': 'base\n' }, 'the base');

  await withBOffline(async () => {
    await fs.writeFile(a.p(dir, 'keep.txt'), 'edited on A\n');
    await onServer(`${dir}/keep.txt`, 'edited on A\n');
    await fs.rm(b.p(dir, 'keep.txt'));
  });
  await settle(t, [a, b], dir, (tr) => show(tr) === show({ 'keep.txt': 'edited on A\n' }), 'the edited file is kept on both');
});

t.test('conflict, the other way round: rename on B (offline, queued), edit on A: the edit lands in the renamed file, on both drives', async (t) => {
  const dir = 'edit-rename';
  await fs.mkdir(a.p(dir));
  await fs.writeFile(a.p(dir, 'old.txt'), 'base\n');
  await converge(t, [a, b], dir, { 'old.txt': 'base\n' }, 'the base');

  await withBOffline(async () => {
    await fs.writeFile(a.p(dir, 'old.txt'), 'edited on A\n');
    await onServer(`${dir}/old.txt`, 'edited on A\n');
    await fs.rename(b.p(dir, 'old.txt'), b.p(dir, 'new.txt'));
  });
  await settle(t, [a, b], dir, (tr) => show(tr) === show({ 'new.txt': 'edited on A\n' }), 'new name, edited content, old name gone, on both');
});

t.test('conflict: both create the same name: both are kept, one as a conflicted copy, on both drives', async (t) => {
  const dir = 'both-create';
  await fs.mkdir(a.p(dir));
  await converge(t, [a, b], dir, {}, 'the empty folder');

  await withBOffline(async () => {
    await fs.writeFile(a.p(dir, 'x.txt'), 'created on A\n');
    await onServer(`${dir}/x.txt`, 'created on A\n');
    await fs.writeFile(b.p(dir, 'x.txt'), 'created on B, offline\n');
    t.equal(await fs.readFile(b.p(dir, 'x.txt'), 'utf8'), 'created on B, offline\n', 'offline, B shows its new file');
  });

  const re = conflictRe('x', '.txt');
  const tree = await settle(
    t,
    [a, b],
    dir,
    (tr) => Object.keys(tr).length === 2 && 'x.txt' in tr && Object.keys(tr).some((k) => re.test(k)),
    'A and B converge',
  );
  if (!tree) return;
  const copy = Object.keys(tree).find((k) => re.test(k))!;
  t.same([tree['x.txt'], tree[copy]].sort(), ['created on A\n', 'created on B, offline\n'], 'both contents are kept');
  t.comment(`x.txt holds ${JSON.stringify(tree['x.txt'])}; "${copy}" holds ${JSON.stringify(tree[copy])}`);
  const loser = tree[copy] === 'created on A\n' ? 'devA' : 'devB';
  t.match(copy, conflictRe('x', '.txt', loser), `the copy is named after the device whose bytes it holds (${loser})`);
});

t.test('conflict: both make a link of one name: both are kept, the later one as a conflicted copy, on both drives', async (t) => {
  const dir = 'both-link';
  await fs.mkdir(a.p(dir));
  await converge(t, [a, b], dir, {}, 'the empty folder');

  await withBOffline(async () => {
    await fs.symlink('from/A', a.p(dir, 'ln'));
    await eventually("the server to have A's link", () => remoteNode(alice.client, `${dir}/ln`), (n) => n?.target === 'from/A');
    await fs.symlink('from/B/offline', b.p(dir, 'ln'));
    t.equal(await fs.readlink(b.p(dir, 'ln')), 'from/B/offline', 'offline, B reads its new link');
  });

  const re = conflictRe('ln', '', 'devB');
  const tree = await settle(
    t,
    [a, b],
    dir,
    (tr) => Object.keys(tr).length === 2 && tr.ln === treeLink('from/A') && Object.keys(tr).some((k) => re.test(k)),
    'A and B converge',
  );
  if (!tree) return;
  const copy = Object.keys(tree).find((k) => re.test(k))!;
  t.equal(tree[copy], treeLink('from/B/offline'), `B's link is kept as "${copy}", with its target`);
});

t.test('conflict: a folder deleted on A while B adds a file in it: the file survives, on both drives', async (t) => {
  const dir = 'folder-delete';
  await fs.mkdir(a.p(dir, 'doomed'), { recursive: true });
  await fs.writeFile(a.p(dir, 'doomed', 'old.txt'), 'old\n');
  await converge(t, [a, b], dir, { 'doomed/': '<dir>', 'doomed/old.txt': 'old\n' }, 'the folder');

  const content = `survivor ${Date.now()}\n`;
  await withBOffline(async () => {
    await fs.rm(a.p(dir, 'doomed'), { recursive: true });
    await onServer(`${dir}/doomed`, undefined);
    await fs.writeFile(b.p(dir, 'doomed', 'added.txt'), content);
  });

  await survives(t, 'added*', content);
});

t.test('conflict, the other way round: a folder deleted on B (offline, queued) while A adds a file in it: the file survives, on both drives', async (t) => {
  const dir = 'folder-delete-b';
  await fs.mkdir(a.p(dir, 'doomed'), { recursive: true });
  await fs.writeFile(a.p(dir, 'doomed', 'old.txt'), 'old\n');
  await converge(t, [a, b], dir, { 'doomed/': '<dir>', 'doomed/old.txt': 'old\n' }, 'the folder');

  const content = `survivor from A ${Date.now()}\n`;
  await withBOffline(async () => {
    await fs.writeFile(a.p(dir, 'doomed', 'added.txt'), content);
    await onServer(`${dir}/doomed/added.txt`, content);
    await fs.rm(b.p(dir, 'doomed'), { recursive: true });
  });
  await survives(t, 'added*', content);
});

t.test('the refresh that makes B\'s kernel see a remote edit writes nothing: edits with odd-millisecond mtimes reach B and the change feed holds only them', async (t) => {
  const api = devC.client;
  const root = await api.root();
  const file = await api.create({ parent_id: root.id, name: 'mtimes.txt', kind: 'file' });
  const head0 = (await api.changesHead()).cursor;
  const ms = [1_700_000_000_001, 1_700_000_000_123, 1_700_000_000_999, 1_732_449_123_123, 1_732_449_123_457, 1_732_449_123_789];
  let version = 0;
  for (const [i, mtime] of ms.entries()) {
    const body = Buffer.from(`edit ${i} `.padEnd(64, '.'));
    const hash = blake3Hex(body);
    await api.putBlock(hash, body);
    version = (await api.commit(file.id, { base_version: version, blocks: [{ hash, size: body.length }], size: body.length, mtime })).version;
    const seen = await eventually(`edit ${i} on B`, () => fs.readFile(b.p('mtimes.txt'), 'utf8').catch(() => ''), (text) => text === body.toString()).catch((err: Error) => err);
    if (seen instanceof Error) t.fail(seen.message);
    t.equal(Math.floor((await fs.stat(b.p('mtimes.txt'))).mtimeMs), mtime, `edit ${i}: B reads the new content, with the mtime ${mtime}`);
  }
  // A last change B must see after everything before it: by then any write-back of B's refreshes is on the server.
  await api.create({ parent_id: root.id, name: 'mtimes-sentinel', kind: 'dir' });
  const sentinel = await eventually('the sentinel on B', () => fs.stat(b.p('mtimes-sentinel')).then(() => true, () => false), (x) => x).catch((err: Error) => err);
  if (sentinel instanceof Error) t.fail(sentinel.message);
  // Every change since head0, one page per change (a page of one holds one journal row).
  const seen: string[] = [];
  for (let cursor = head0, more = true; more; ) {
    const page = await api.changes(cursor, 1);
    seen.push(...page.changes.map((c) => (c.id === file.id ? 'file' : c.name)));
    cursor = page.cursor;
    more = page.has_more;
  }
  t.same(seen, [...ms.map(() => 'file'), 'mtimes-sentinel'], 'the server saw exactly the commits and the sentinel: no mtime written back by B');
  t.equal((await api.node(file.id)).mtime, ms.at(-1), 'and the file keeps the mtime of its last commit');
});

t.test('after all of it, A and B show the same drive', async (t) => {
  await settle(t, [a, b], '', () => true, 'the whole drive');
});
