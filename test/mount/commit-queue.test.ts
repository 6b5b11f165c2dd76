import crypto from 'node:crypto';
import { constants as fsc } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { startServer, type RunningServer } from '../../backend/server.js';
import { createUser } from '../../backend/services/accounts.js';
import { withSettings } from '../../backend/settings.js';
import type { CommitResult } from '../../mount/sync/sender.js';
import { StratusClient } from '../../protocol/client.js';
import { pino } from 'pino';
import { blockHash, startTestBackend, type TestBackend } from '../helpers/backend.js';
import {
  assembleVfs,
  drained,
  Faults,
  logWatcher,
  nextCommit,
  readAll,
  restartVfs,
  serverBytes,
  serverChild,
  SMALL_CHUNKING,
  queuedSaves,
  writeAll,
  type VfsHarness,
  type VfsOptions,
} from '../helpers/vfs.js';

/**
 * The durable commit queue (DESIGN §4 invariants 5 and 6, §6 "rapid saves coalesce") driven
 * through the Vfs, over a real in-process server. In-flight states are reached by holding client
 * calls at a gate; failures are injected as network errors; crashes close everything without a
 * drain and reassemble the mount on the same cache folder.
 */

const KiB = 1024;
const CHUNKING = SMALL_CHUNKING;
const DEVICE = 'laptop';

let backend: TestBackend;
let users = 0;

t.before(async () => {
  backend = await startTestBackend('sqlite', { chunking: CHUNKING });
});
t.teardown(() => backend?.close());

/** A mount of a fresh user's drive; `ref.h` is the current harness (restarts replace it), closed at teardown. */
async function setup(t: Test, opts: Partial<VfsOptions> = {}, on: { url: string; addUser(name: string): Promise<{ token: string; client: StratusClient }> } = backend) {
  const user = await on.addUser(`cq${++users}`);
  const cacheDir = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-cq-'));
  const ref = { h: await assembleVfs({ url: on.url, token: user.token, cacheDir, device: DEVICE, ...opts }) };
  t.teardown(async () => {
    await ref.h.close();
    await fs.rm(cacheDir, { recursive: true, force: true });
  });
  return { ref, user, cacheDir };
}

const bytes = (n: number) => crypto.randomBytes(n);

/** Collects the queue's `committed` events. */
function commits(h: VfsHarness): CommitResult[] {
  const out: CommitResult[] = [];
  h.queue.on('committed', (r: CommitResult) => out.push(r));
  return out;
}

async function versionNumbers(client: StratusClient, id: string): Promise<number[]> {
  return (await client.versions(id)).versions.map((v) => v.version).sort((a, b) => a - b);
}

t.test('invariant 5: a closed file survives a crash before its commit; the restarted mount replays and commits it', async (t) => {
  const faults = new Faults();
  const logs = logWatcher();
  const { ref, user } = await setup(t, { wrapClient: faults.wrap, retryMs: 60_000, log: logs.log });
  const data = bytes(300 * KiB);
  faults.offline.add('checkBlocks'); // the server "unreachable" for the queue
  await writeAll(ref.h.vfs, '/p.bin', data, { create: true });
  const pending = (await ref.h.store.loadOps()).flatMap((o) => (o.op.kind === 'content' ? [o.op] : []));
  t.equal(pending.length, 1, 'the entry is in the state store when release returns');
  t.ok((await fs.stat(pending[0]!.staging)).size === data.length, 'its staging file holds the bytes');
  await logs.until((l) => l.includes('failed'));
  t.equal((await serverChild(user.client, 'p.bin'))!.head_version, 0, 'nothing committed yet');

  ref.h = await restartVfs(ref.h, 'crash', { wrapClient: undefined, log: undefined });
  t.equal(ref.h.queue.pendingCount, 1, 'the restarted queue has the entry');
  t.same(await fs.readdir(ref.h.stagingDir), [path.basename(pending[0]!.staging)], 'its staging file was kept');
  t.ok((await readAll(ref.h.vfs, '/p.bin')).equals(data), 'the mount shows the queued bytes after the restart');
  await drained(ref.h.queue);
  const node = await serverChild(user.client, 'p.bin');
  t.equal(node!.head_version, 1, 'replayed: version 1');
  t.ok((await serverBytes(user.client, node!.id)).bytes.equals(data), 'with the bytes written before the crash');
  t.same(await ref.h.store.loadOps(), [], 'the entry left the state store');
  t.same(await fs.readdir(ref.h.stagingDir), [], 'the staging file is removed');
});

t.test('invariant 5: a file still open for writing at the crash was never acknowledged: its staging is cleaned up', async (t) => {
  const { ref, user } = await setup(t);
  await writeAll(ref.h.vfs, '/kept', Buffer.from('v1'), { create: true });
  await drained(ref.h.queue);
  const fh = await ref.h.vfs.open('/kept', fsc.O_WRONLY | fsc.O_TRUNC);
  await ref.h.vfs.write(fh, Buffer.from('unsaved'), 7, 0);
  t.equal((await fs.readdir(ref.h.stagingDir)).length, 1, 'a staging file while open');
  const dead = ref.h;
  ref.h = await restartVfs(ref.h, 'crash');
  // A crash closes every descriptor; here the dead Vfs still holds its handle: let it go (its queue is gone).
  await dead.vfs.release(fh).catch(() => undefined);
  t.same(await fs.readdir(ref.h.stagingDir), [], 'the orphan staging file is removed at start');
  t.equal(ref.h.queue.pendingCount, 0, 'nothing queued');
  t.same(await readAll(ref.h.vfs, '/kept'), Buffer.from('v1'), 'the file shows its committed content');
  t.same(await versionNumbers(user.client, (await serverChild(user.client, 'kept'))!.id), [1]);
});

t.test('invariant 5: an unlink logged while the file\'s save was on the wire deletes that save, also when the mount dies before sending it', async (t) => {
  const faults = new Faults();
  const logs = logWatcher();
  const { ref, user } = await setup(t, { wrapClient: faults.wrap, log: logs.log, retryMs: 60_000 });
  faults.hold('commit');
  await writeAll(ref.h.vfs, '/f.bin', bytes(10 * KiB), { create: true });
  await faults.waiting('commit');
  // The mount saw no version of it yet: the delete is logged for version 0, then the save lands as version 1.
  await ref.h.vfs.unlink('/f.bin');
  faults.offline.add('remove');
  faults.open('commit');
  await logs.until((l) => l.startsWith('delete of') && l.includes('failed'));
  t.equal((await serverChild(user.client, 'f.bin'))?.head_version, 1, 'the save landed; the delete did not reach the server');
  ref.h = await restartVfs(ref.h, 'crash', { wrapClient: undefined, log: undefined });
  await drained(ref.h.queue);
  t.equal(await serverChild(user.client, 'f.bin'), undefined, 'the restarted mount deleted it: its own save is not another device\'s edit');
  t.same((await ref.h.vfs.readdir('/')).names, [], 'and shows nothing');
});

t.test('invariant 6: a save opened before the file\'s previous save landed and closed after is logged on that version: a crash before it is sent makes no conflicted copy', async (t) => {
  const faults = new Faults();
  const logs = logWatcher();
  const { ref, user } = await setup(t, { wrapClient: faults.wrap, log: logs.log, retryMs: 60_000 });
  await writeAll(ref.h.vfs, '/f.bin', bytes(KiB), { create: true });
  await drained(ref.h.queue);
  faults.hold('commit');
  await writeAll(ref.h.vfs, '/f.bin', bytes(2 * KiB));
  await faults.waiting('commit');
  // Opened while version 2 is on the wire: the session starts on top of the queued save (version 1's successor).
  const fh = await ref.h.vfs.open('/f.bin', fsc.O_WRONLY | fsc.O_TRUNC);
  const last = bytes(3 * KiB);
  await ref.h.vfs.write(fh, last, last.length, 0);
  const landed = nextCommit(ref.h.queue);
  faults.open('commit');
  t.equal((await landed).manifest.version, 2, 'the previous save landed as version 2');
  // The last save is logged now, and does not reach the server before the crash.
  faults.offline.add('checkBlocks');
  await ref.h.vfs.release(fh);
  await logs.until((l) => l.includes('failed'));
  t.same(queuedSaves(ref.h).map((e) => e.baseVersion), [2], 'logged on version 2, which this mount made');
  ref.h = await restartVfs(ref.h, 'crash', { wrapClient: undefined, log: undefined });
  await drained(ref.h.queue);
  t.equal(ref.h.queue.stats.conflicts, 0, 'no conflict: the head was this mount\'s own save');
  const node = await serverChild(user.client, 'f.bin');
  t.same(await versionNumbers(user.client, node!.id), [1, 2, 3], 'the last save is version 3');
  t.ok((await serverBytes(user.client, node!.id)).bytes.equals(last), 'with the last bytes');
  t.same((await ref.h.vfs.readdir('/')).names, ['f.bin'], 'and no conflicted copy');
});

t.test('coalescing: three quick re-saves while the first has not started make one commit; the final content wins', async (t) => {
  const faults = new Faults();
  // One commit at a time, and another file's commit held in flight: the saves of c.txt wait unstarted.
  const { ref, user } = await setup(t, { wrapClient: faults.wrap, parallelCommits: 1 });
  const { h } = ref;
  const seen = commits(h);
  faults.hold('commit');
  await writeAll(h.vfs, '/other', Buffer.from('other'), { create: true });
  await faults.waiting('commit');
  const saves = [bytes(50 * KiB), bytes(60 * KiB), bytes(70 * KiB)];
  await writeAll(h.vfs, '/c.txt', saves[0]!, { create: true });
  await writeAll(h.vfs, '/c.txt', saves[1]!);
  await writeAll(h.vfs, '/c.txt', saves[2]!);
  t.same(queuedSaves(h).map((e) => e.size), [5, saves[2]!.length], 'one entry of c.txt left: the later saves superseded the earlier');
  t.equal((await fs.readdir(h.stagingDir)).length, 2, 'superseded staging files are removed');
  t.equal(h.cache.stats().reservedBytes, 5 + saves[2]!.length, 'only the last save holds cache room');
  t.ok((await readAll(h.vfs, '/c.txt')).equals(saves[2]!), 'the mount shows the last save');
  faults.open('commit');
  await drained(h.queue);
  t.equal(seen.filter((r) => r.manifest.size !== 5).length, 1, 'one commit of c.txt');
  const node = await serverChild(user.client, 'c.txt');
  t.same(await versionNumbers(user.client, node!.id), [1], 'one version');
  t.ok((await serverBytes(user.client, node!.id)).bytes.equals(saves[2]!), 'the final content');
  t.equal(h.cache.stats().reservedBytes, 0);
});

t.test('coalescing with the server unreachable: quick re-saves make at most two commits; the final content wins', async (t) => {
  const faults = new Faults();
  const logs = logWatcher();
  const { ref, user } = await setup(t, { wrapClient: faults.wrap, retryMs: 60_000, log: logs.log });
  const { h } = ref;
  const seen = commits(h);
  faults.offline.add('checkBlocks');
  const saves = [bytes(50 * KiB), bytes(60 * KiB), bytes(70 * KiB)];
  await writeAll(h.vfs, '/c.txt', saves[0]!, { create: true });
  await logs.until((l) => l.includes('failed')); // the first waits for its retry: not started
  // A new save supersedes it and is tried at once (it may be in flight when the third comes).
  await writeAll(h.vfs, '/c.txt', saves[1]!);
  await writeAll(h.vfs, '/c.txt', saves[2]!);
  t.ok(h.queue.pendingCount <= 2, `${h.queue.pendingCount} entries left (≤ 2)`);
  faults.offline.delete('checkBlocks');
  await drained(h.queue);
  t.ok(seen.length <= 2, `${seen.length} commits (≤ 2)`);
  const node = await serverChild(user.client, 'c.txt');
  t.ok((await serverBytes(user.client, node!.id)).bytes.equals(saves[2]!), 'the final content');
  t.equal(h.queue.stats.conflicts, 0, 'no conflict');
  t.same(await fs.readdir(h.stagingDir), []);
  t.equal(h.cache.stats().reservedBytes, 0);
});

t.test('coalescing: three quick re-saves while the first is in flight make two commits; the final content wins', async (t) => {
  const faults = new Faults();
  const { ref, user } = await setup(t, { wrapClient: faults.wrap });
  const { h } = ref;
  const seen = commits(h);
  faults.hold('checkBlocks');
  const saves = [bytes(50 * KiB), bytes(60 * KiB), bytes(70 * KiB)];
  await writeAll(h.vfs, '/c.txt', saves[0]!, { create: true });
  await faults.waiting('checkBlocks');
  await writeAll(h.vfs, '/c.txt', saves[1]!);
  await writeAll(h.vfs, '/c.txt', saves[2]!);
  t.equal(queuedSaves(h).length, 2, 'the one in flight and the last save');
  faults.open('checkBlocks');
  await drained(h.queue);
  t.ok(seen.length <= 2, `${seen.length} commits (≤ 2)`);
  const node = await serverChild(user.client, 'c.txt');
  t.same(await versionNumbers(user.client, node!.id), [1, 2]);
  t.ok((await serverBytes(user.client, node!.id, 1)).bytes.equals(saves[0]!), 'version 1: the first save');
  t.ok((await serverBytes(user.client, node!.id)).bytes.equals(saves[2]!), 'head: the final content');
  t.equal(h.queue.stats.conflicts, 0, 'no conflict');
});

t.test('rebase: a save enqueued while the previous commit is in flight commits on top (v1, v2, no conflicted copy)', async (t) => {
  const faults = new Faults();
  const { ref, user } = await setup(t, { wrapClient: faults.wrap });
  const { h } = ref;
  const first = bytes(100 * KiB);
  faults.hold('commit');
  await writeAll(h.vfs, '/r.txt', first, { create: true });
  await faults.waiting('commit');
  // Edit in place (no O_TRUNC): the new staging starts from the queued content.
  const fh = await h.vfs.open('/r.txt', fsc.O_RDWR);
  await h.vfs.write(fh, Buffer.from('PATCH'), 5, 1000);
  await h.vfs.release(fh);
  t.equal(queuedSaves(h).length, 2, 'second save queued behind the first');
  faults.open('commit');
  await drained(h.queue);
  const expected = Buffer.from(first);
  expected.write('PATCH', 1000);
  const node = await serverChild(user.client, 'r.txt');
  t.same(await versionNumbers(user.client, node!.id), [1, 2], 'versions 1 and 2');
  t.ok((await serverBytes(user.client, node!.id, 1)).bytes.equals(first), 'version 1: first save');
  t.ok((await serverBytes(user.client, node!.id, 2)).bytes.equals(expected), 'version 2: the edit on top of it');
  t.equal((await user.client.manifest(node!.id, 2)).base_version, 1, 'committed with base 1');
  t.equal(h.queue.stats.conflicts, 0, 'no conflict');
  t.same((await h.vfs.readdir('/')).names, ['r.txt'], 'no conflicted copy');
  t.same((await user.client.allChildren((await user.client.root()).id)).map((c) => c.name), ['r.txt']);
});

t.test('invariant 6: another device commits first → the local bytes become a conflicted copy, the file keeps the other bytes', async (t) => {
  const { ref, user } = await setup(t);
  const { h } = ref;
  await writeAll(h.vfs, '/f.txt', Buffer.from('base'), { create: true });
  await drained(h.queue);
  const id = (await serverChild(user.client, 'f.txt'))!.id;

  // The other device (its own token) commits version 2 on top of version 1.
  const phone = await user.client.createDevice('phone');
  const other = new StratusClient({ server: backend.url, token: phone.token });
  t.teardown(() => other.close());
  const theirs = Buffer.from('their edit');
  const block = await other.putBlock(blockHash(theirs), theirs);
  await other.commit(id, { base_version: 1, blocks: [block], size: theirs.length });

  // This mount has not heard of it: its save is based on version 1.
  const mine = Buffer.from('my local edit');
  const done = nextCommit(h.queue);
  await writeAll(h.vfs, '/f.txt', mine);
  await drained(h.queue);
  const result = await done;
  t.ok(result.conflictedCopy, 'the commit was kept as a conflicted copy');
  t.match(result.conflictedCopy!, /^f \(conflicted copy from laptop \d{4}-\d{2}-\d{2} \d{6}\)\.txt$/, 'named after the file, device and time');
  t.equal(h.queue.stats.conflicts, 1);

  const kids = await user.client.allChildren((await user.client.root()).id);
  t.same(kids.map((c) => c.name).sort(), ['f.txt', result.conflictedCopy!].sort(), 'the copy sits next to the file');
  const file = kids.find((c) => c.name === 'f.txt')!;
  t.equal(file.id, id, 'the file is the same node');
  t.same(await versionNumbers(user.client, id), [1, 2], 'its history untouched by the loser');
  t.same((await serverBytes(user.client, id)).bytes, theirs, 'the file keeps the other device bytes');
  const copy = kids.find((c) => c.name === result.conflictedCopy)!;
  t.same((await serverBytes(user.client, copy.id)).bytes, mine, 'the copy holds the local bytes');

  t.same((await h.vfs.readdir('/')).names.sort(), ['f.txt', result.conflictedCopy!].sort(), 'the mount lists both');
  t.same(await readAll(h.vfs, '/f.txt'), theirs, 'the mount shows the other bytes in the file');
  t.same(await readAll(h.vfs, `/${result.conflictedCopy!}`), mine, 'and the local bytes in the copy');
});

t.test('a node deleted on the server while its commit is queued: the bytes survive as a new file under the same name', async (t) => {
  const faults = new Faults();
  const { ref, user } = await setup(t, { wrapClient: faults.wrap });
  const { h } = ref;
  await writeAll(h.vfs, '/gone.txt', Buffer.from('v1'), { create: true });
  await drained(h.queue);
  const id = (await serverChild(user.client, 'gone.txt'))!.id;

  faults.hold('commit');
  const done = nextCommit(h.queue);
  const mine = bytes(40 * KiB);
  await writeAll(h.vfs, '/gone.txt', mine);
  await faults.waiting('commit');
  await user.client.remove(id); // another device deletes it meanwhile
  faults.open('commit');
  await drained(h.queue);
  const result = await done;

  // What the code does: the server refuses the commit (node_deleted); the queue creates a new file
  // with the original name in the original folder (free again) and commits the bytes there. Only
  // if the name were taken would it use the conflicted-copy name.
  t.not(result.nodeId, id, 'committed on a new node');
  t.equal(result.conflictedCopy, 'gone.txt', 'under the original name');
  const live = await serverChild(user.client, 'gone.txt');
  t.equal(live?.id, result.nodeId, 'the live "gone.txt" is the new node');
  t.ok((await serverBytes(user.client, result.nodeId)).bytes.equals(mine), 'holding the local bytes');
  t.not((await user.client.node(id)).deleted_at, null, 'the deleted node stays in the trash');
  t.same((await h.vfs.readdir('/')).names, ['gone.txt'], 'the mount lists the recovered file once');
  t.ok((await readAll(h.vfs, '/gone.txt')).equals(mine), 'with the local bytes');
});

t.test('transient failures: commits failing with network errors are retried with backoff and land', async (t) => {
  const faults = new Faults();
  const logs = logWatcher();
  const { ref, user } = await setup(t, { wrapClient: faults.wrap, retryMs: 10, log: logs.log });
  const { h } = ref;
  const data = bytes(80 * KiB);
  faults.failNext.set('commit', 3);
  const done = nextCommit(h.queue);
  await writeAll(h.vfs, '/flaky', data, { create: true });
  await done; // no drain: the queue's own retry timer brings it in
  t.equal(faults.count('commit'), 4, 'three failed attempts, then the one that landed');
  t.equal(logs.lines.filter((l) => l.includes('failed')).length, 3, 'each failure logged');
  t.equal(h.queue.stats.commits, 1, 'one commit');
  const node = await serverChild(user.client, 'flaky');
  const blocks = (await user.client.manifest(node!.id)).blocks.length;
  t.equal(h.queue.stats.uploadedBlocks, blocks, `each of the ${blocks} blocks uploaded once (the retries found them on the server)`);
  t.same(await versionNumbers(user.client, node!.id), [1]);
  t.ok((await serverBytes(user.client, node!.id)).bytes.equals(data));
  await drained(h.queue);
});

t.test('transient failures: the server stops, a new server starts on the same data folder, the commit lands', async (t) => {
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-cq-server-'));
  const settings = withSettings({ chunking: CHUNKING });
  const log = pino({ level: 'silent' });
  let server: RunningServer = await startServer({ dataDir, listen: '127.0.0.1:0', settings, log });
  const listen = new URL(server.url).host;
  t.teardown(async () => {
    await server.close().catch(() => undefined);
    await fs.rm(dataDir, { recursive: true, force: true });
  });
  const clients: StratusClient[] = [];
  t.teardown(() => Promise.all(clients.map((c) => c.close())));
  const on = {
    url: server.url,
    async addUser(name: string) {
      const created = await createUser(server.db, name);
      const client = new StratusClient({ server: server.url, token: created.token });
      clients.push(client);
      return { token: created.token, client };
    },
  };
  const logs = logWatcher();
  const { ref, user } = await setup(t, { retryMs: 20, log: logs.log }, on);
  const { h } = ref;
  const fh = await h.vfs.create('/later.bin', 0o644);
  const data = bytes(120 * KiB);
  await h.vfs.write(fh, data, data.length, 0);
  await server.close();
  await h.vfs.release(fh); // acknowledged while the server is down
  await logs.until((l) => l.includes('failed'));
  const done = nextCommit(h.queue);
  server = await startServer({ dataDir, listen, settings, log });
  await done;
  const node = await serverChild(user.client, 'later.bin');
  t.equal(node!.head_version, 1, 'committed once the server is back');
  t.ok((await serverBytes(user.client, node!.id)).bytes.equals(data), 'with the bytes');
  await drained(h.queue);
  t.same(await fs.readdir(h.stagingDir), []);
});

t.test('resume: after a crash mid-upload the restarted queue uploads only the blocks still missing', async (t) => {
  const faults = new Faults();
  const logs = logWatcher();
  const { ref, user } = await setup(t, { wrapClient: faults.wrap, retryMs: 60_000, log: logs.log, parallelUploads: 1 });
  const data = bytes(1024 * KiB);
  faults.allowThenFail.set('putBlock', 5); // the link drops after five blocks
  await writeAll(ref.h.vfs, '/big.bin', data, { create: true });
  await logs.until((l) => l.includes('failed'));
  const firstRun = ref.h.queue.stats.uploadedBlocks;
  t.equal(firstRun, 5, 'five blocks made it before the failure');

  ref.h = await restartVfs(ref.h, 'crash', { wrapClient: undefined, log: undefined });
  await drained(ref.h.queue);
  const node = await serverChild(user.client, 'big.bin');
  const { bytes: got, manifest } = await serverBytes(user.client, node!.id);
  t.ok(got.equals(data), 'committed with all the bytes');
  const unique = new Set(manifest.blocks.map((b) => b.hash)).size;
  t.ok(unique > 5, `${unique} blocks in all`);
  t.equal(ref.h.queue.stats.checkedBlocks, unique, 'the restarted queue asked about every block');
  t.equal(ref.h.queue.stats.uploadedBlocks, unique - firstRun, 'and uploaded only the missing ones');
});

t.test('the folder of a queued file deleted on the server: the folder is made again and the bytes survive at their path', async (t) => {
  const faults = new Faults();
  const logs = logWatcher();
  const { ref, user } = await setup(t, { wrapClient: faults.wrap, retryMs: 20, log: logs.log });
  const { h } = ref;
  await h.vfs.mkdir('/dir', 0o755);
  await writeAll(h.vfs, '/dir/x.txt', Buffer.from('v1'), { create: true });
  await drained(h.queue);
  const dirId = (await serverChild(user.client, 'dir'))!.id;

  faults.hold('commit');
  const done = nextCommit(h.queue);
  const mine = bytes(30 * KiB);
  await writeAll(h.vfs, '/dir/x.txt', mine);
  await faults.waiting('commit');
  await user.client.remove(dirId); // another device deletes the whole folder meanwhile
  faults.open('commit');
  const result = await done;
  await drained(h.queue);
  // The file keeps its path: the queue makes a folder of the same name again (the old one stays in the trash).
  const kept = await user.client.node(result.nodeId);
  t.equal(kept.deleted_at, null, `kept as a live file: ${kept.name}`);
  const again = await serverChild(user.client, 'dir');
  t.ok(again && again.id !== dirId && again.kind === 'dir', 'a live folder "dir" exists again, a new node');
  t.equal(kept.parent_id, again?.id, 'the file is in it');
  t.equal(kept.name, 'x.txt', 'under its own name');
  t.ok((await serverBytes(user.client, result.nodeId)).bytes.equals(mine), 'holding the local bytes');
  t.ok((await readAll(h.vfs, '/dir/x.txt')).equals(mine), 'visible in the mount at its path');
});

t.test('a commit that landed but whose reply was lost is not committed twice and makes no conflicted copy', async (t) => {
  const faults = new Faults();
  const logs = logWatcher();
  const { ref, user } = await setup(t, { wrapClient: faults.wrap, retryMs: 20, log: logs.log });
  const { h } = ref;
  const data = bytes(50 * KiB);
  faults.loseReply.set('commit', 1);
  await writeAll(h.vfs, '/once.txt', data, { create: true });
  await drained(h.queue);
  t.ok(logs.lines.some((l) => l.includes('reply lost')), 'the first reply was lost');
  const node = await serverChild(user.client, 'once.txt');
  t.same(await versionNumbers(user.client, node!.id), [1], 'one version');
  t.ok((await serverBytes(user.client, node!.id)).bytes.equals(data));
  t.equal(h.queue.stats.conflicts, 0, 'no conflict');
  t.same((await user.client.allChildren((await user.client.root()).id)).map((c) => c.name), ['once.txt'], 'no conflicted copy');

  // The same across a crash: the reply is lost, the mount dies before it retries.
  const more = bytes(50 * KiB);
  const lost = logWatcher();
  const faults2 = new Faults();
  faults2.loseReply.set('commit', 1);
  ref.h = await restartVfs(ref.h, 'close', { wrapClient: faults2.wrap, log: lost.log, retryMs: 60_000 });
  await writeAll(ref.h.vfs, '/once.txt', more);
  await lost.until((l) => l.includes('reply lost'));
  ref.h = await restartVfs(ref.h, 'crash', { wrapClient: undefined, log: undefined });
  await drained(ref.h.queue);
  t.same(await versionNumbers(user.client, node!.id), [1, 2], 'replayed after the crash: still one new version');
  t.ok((await serverBytes(user.client, node!.id)).bytes.equals(more));
  t.same((await user.client.allChildren((await user.client.root()).id)).map((c) => c.name), ['once.txt'], 'no conflicted copy');
  t.ok((await readAll(ref.h.vfs, '/once.txt')).equals(more), 'the mount shows it');
});

t.test('a rename over a file that landed but whose reply was lost (then a crash) is not taken for a source deleted elsewhere: a later unlink deletes the file', async (t) => {
  const faults = new Faults();
  const logs = logWatcher();
  const { ref, user } = await setup(t, { wrapClient: faults.wrap, retryMs: 60_000, log: logs.log });
  await writeAll(ref.h.vfs, '/dest.txt', bytes(KiB), { create: true });
  const content = bytes(2 * KiB);
  await writeAll(ref.h.vfs, '/src.txt', content, { create: true });
  await drained(ref.h.queue);
  // The editor pattern: the new content renamed over the file; the server replaces it, the reply is lost.
  faults.loseReply.set('update', 1);
  await ref.h.vfs.rename('/src.txt', '/dest.txt');
  await logs.until((l) => l.includes('reply lost'));
  const dest = await serverChild(user.client, 'dest.txt');
  t.ok((await serverBytes(user.client, dest!.id)).bytes.equals(content), 'the replace landed on the server');
  await ref.h.vfs.unlink('/dest.txt');
  ref.h = await restartVfs(ref.h, 'crash', { wrapClient: undefined, log: undefined });
  await drained(ref.h.queue);
  t.same((await user.client.allChildren((await user.client.root()).id)).map((c) => c.name), [], 'the unlink deleted the file that holds the renamed content');
});

t.test('a folder made and moved at once: the move waits until the create\'s reply is written, so a crash between them makes no second folder (crash-trial seeds 98374069, 354762390)', async (t) => {
  const faults = new Faults();
  const logs = logWatcher();
  const { ref, user } = await setup(t, { wrapClient: faults.wrap, retryMs: 60_000, log: logs.log });
  const { h } = ref;
  faults.hold('create');
  await h.vfs.mkdir('/made', 0o755);
  await faults.waiting('create');
  await h.vfs.rename('/made', '/moved');
  await writeAll(h.vfs, '/moved/inside.txt', Buffer.from('kept'), { create: true });
  // The write that takes the create out of the log (with the folder's server id) is slow, then never happens: the process dies.
  let reached!: () => void;
  const atWrite = new Promise<void>((r) => (reached = r));
  let die!: (err: Error) => void;
  const write = h.store.write.bind(h.store);
  h.store.write = async (change) => {
    if (!change.removeOps?.length) return write(change);
    reached();
    return new Promise((_, reject) => (die = reject));
  };
  faults.open('create');
  await atWrite;
  h.queue.retryNow(); // anything that kicks the sender meanwhile (another entry done, a new one logged)
  const move = h.log.list().find((e) => e.op.kind === 'move');
  t.equal(move?.send.started, false, 'the move is not sent while the create\'s reply is not on disk');
  die(new Error('injected: killed before the write committed'));
  await logs.until((l) => l.includes('could not be written'));
  ref.h = await restartVfs(h, 'crash', { wrapClient: undefined, log: undefined });
  await drained(ref.h.queue);
  const root = await user.client.allChildren((await user.client.root()).id);
  t.same(root.map((c) => c.name), ['moved'], 'one folder, under its new name: no empty twin, no conflicted copy');
  t.same((await user.client.allChildren(root[0]!.id)).map((c) => c.name), ['inside.txt'], 'the file is in it');
});

t.test('a file renamed over one whose first save never reached the server, then saved again, makes no conflicted copy', async (t) => {
  const faults = new Faults();
  const logs = logWatcher();
  const { ref, user } = await setup(t, { wrapClient: faults.wrap, retryMs: 60_000, log: logs.log });
  const { h } = ref;
  await writeAll(h.vfs, '/f0.bin', bytes(KiB), { create: true });
  await drained(h.queue);
  await writeAll(h.vfs, '/f0.bin', bytes(KiB));
  await drained(h.queue);
  t.equal((await serverChild(user.client, 'f0.bin'))?.head_version, 2, 'f0 is at version 2');
  // f1 is made on the server, its content is not (the upload fails).
  faults.offline.add('checkBlocks');
  await writeAll(h.vfs, '/f1.bin', bytes(KiB), { create: true });
  await logs.until((l) => l.includes('failed'));
  t.equal((await serverChild(user.client, 'f1.bin'))?.head_version, 0, 'f1 is on the server without content');
  // Renamed over it: on the server f1 takes f0's content as its version 1 (not f0's 2).
  faults.hold('update');
  await h.vfs.rename('/f0.bin', '/f1.bin');
  await faults.waiting('update');
  // Edited again: one session opened while the rename is on the wire, closed after it landed; one after.
  const early = await h.vfs.open('/f1.bin', fsc.O_WRONLY | fsc.O_TRUNC);
  faults.offline.delete('checkBlocks');
  faults.open('update');
  h.queue.retryNow();
  const last = bytes(3 * KiB);
  await h.vfs.write(early, bytes(2 * KiB), 2 * KiB, 0);
  await drained(h.queue);
  await h.vfs.release(early);
  await writeAll(h.vfs, '/f1.bin', last);
  await drained(h.queue);
  t.equal(h.queue.stats.conflicts, 0, 'no conflict: every save was on top of the previous one here');
  t.same((await user.client.allChildren((await user.client.root()).id)).map((c) => c.name), ['f1.bin'], 'no conflicted copy');
  const f1 = await serverChild(user.client, 'f1.bin');
  t.ok((await serverBytes(user.client, f1!.id)).bytes.equals(last), 'the last bytes');
});

t.test('an unlink whose delete cannot be logged fails and leaves the file with its queued content (also across a crash)', async (t) => {
  const faults = new Faults();
  const logs = logWatcher();
  const { ref, user } = await setup(t, { wrapClient: faults.wrap, retryMs: 60_000, log: logs.log });
  faults.offline.add('checkBlocks');
  const data = bytes(20 * KiB);
  await writeAll(ref.h.vfs, '/kept.bin', data, { create: true });
  await logs.until((l) => l.includes('failed'));
  // The state store refuses the write of the delete (a full disk, or the process dying right there).
  const write = ref.h.store.write.bind(ref.h.store);
  ref.h.store.write = async (change) => {
    if (change.addOps?.some((o) => o.op.kind === 'delete')) throw new Error('injected: disk full');
    return write(change);
  };
  await t.rejects(ref.h.vfs.unlink('/kept.bin'), 'the unlink fails');
  ref.h = await restartVfs(ref.h, 'crash', { wrapClient: undefined, log: undefined });
  await drained(ref.h.queue);
  const node = await serverChild(user.client, 'kept.bin');
  t.ok(node && (await serverBytes(user.client, node.id)).bytes.equals(data), 'the file reaches the server with its content');
});

t.test('a rename over a file never sent, whose move cannot be logged, fails and leaves both files as they were (also across a crash; crash-trial seed 418021733)', async (t) => {
  const faults = new Faults();
  const logs = logWatcher();
  const { ref, user } = await setup(t, { wrapClient: faults.wrap, retryMs: 60_000, log: logs.log });
  const source = bytes(KiB);
  await writeAll(ref.h.vfs, '/source.bin', source, { create: true });
  await drained(ref.h.queue);
  // The destination is made and written while the sender waits on an earlier create: nothing of it was sent.
  faults.hold('create');
  await writeAll(ref.h.vfs, '/earlier.bin', bytes(10), { create: true });
  await faults.waiting('create');
  const dest = bytes(2 * KiB);
  await writeAll(ref.h.vfs, '/dest.bin', dest, { create: true });
  const write = ref.h.store.write.bind(ref.h.store);
  ref.h.store.write = async (change) => {
    if (change.addOps?.some((o) => o.op.kind === 'move')) throw new Error('injected: disk full');
    return write(change);
  };
  await t.rejects(ref.h.vfs.rename('/source.bin', '/dest.bin'), 'the rename fails');
  faults.offline.add('create');
  faults.open('create');
  ref.h = await restartVfs(ref.h, 'crash', { wrapClient: undefined, log: undefined });
  await drained(ref.h.queue);
  const names = (await user.client.allChildren((await user.client.root()).id)).map((c) => c.name).sort();
  t.same(names, ['dest.bin', 'earlier.bin', 'source.bin'], 'every file is on the server');
  t.ok((await serverBytes(user.client, (await serverChild(user.client, 'dest.bin'))!.id)).bytes.equals(dest), 'the destination keeps its acknowledged bytes');
  t.ok((await serverBytes(user.client, (await serverChild(user.client, 'source.bin'))!.id)).bytes.equals(source), 'the source keeps its bytes');
});

t.test('a server that says when to come back (429 Retry-After) is not asked sooner, and the bytes stay queued', async (t) => {
  // A server whose users may upload 3000 KiB per 30 s window: a 4 MiB file runs into the limit.
  const limited = await startTestBackend('sqlite', { chunking: CHUNKING, rate: { upload_bytes_per_s: 100 * KiB, window_s: 30 } });
  t.teardown(() => limited.close());
  const logs = logWatcher();
  const { ref } = await setup(t, { log: logs.log, retryMs: 100 }, limited);
  await writeAll(ref.h.vfs, '/big.bin', bytes(4096 * KiB), { create: true });
  const line = await logs.until((l) => /commit of .* failed: too many upload bytes/.test(l));
  const askedS = Number(/retry in (\d+) s/.exec(line)?.[1]);
  const waitMs = Number(/retrying in (\d+) ms/.exec(line)?.[1]);
  t.ok(askedS >= 1, `the server asked for ${askedS} s`);
  t.ok(waitMs >= askedS * 1000, `the queue waits ${waitMs} ms, not its own 100 ms backoff`);
  t.equal(queuedSaves(ref.h).length, 1, 'the save stays queued');
  await ref.h.crash(); // stop here: the window would take 30 s to reopen
});
