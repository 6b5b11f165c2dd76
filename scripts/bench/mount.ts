import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { StratusClient } from '../../protocol/client.js';
import { blake3Hex } from '../../protocol/hash.js';
import type { BatchOp, BlockRef, NodeInfo, ServerConfig } from '../../protocol/types.js';
import { commitFile, fmtSize, MiB, parallel, pollUntil, runQuiet, seconds, uploadFile, writeRandomFile } from './helpers.js';
import { ensureRclone, startRclone, type RcloneMount } from './rclone.js';
import type { Section } from './report.js';
import { addUser, startMount, startServe, type MountProcess } from './serve-process.js';

/**
 * The drive against native disk and rclone mount, each figure next to the same operation on the
 * same disk in the same run: sequential and small reads (cold from the loopback server, from the
 * disk cache, from the page cache), `find` / `ls -lR` over a big tree, writes until the server has
 * them, the bytes one small edit uploads, and the mount's memory while a big file streams through
 * a small cache. rclone (scripts/bench/rclone.ts: `rclone serve webdav` of a folder holding the
 * same files, `rclone mount --vfs-cache-mode full`) is left out, with a line saying why, where it
 * cannot run. The server, every mount and every shell tool run as their own processes.
 */

const run = promisify(execFile);
/** Throughputs in these tables are decimal, as the reference figures are. */
const MB = 1e6;

export interface MountBenchOptions {
  /** Size of the read-test file (MiB). */
  fileMiB: number;
  treeDirs: number;
  /** Files of the tree in all (spread evenly over the folders; empty files). */
  treeFiles: number;
  writeMiB: number;
  /** Size of the file that gets a one-byte insert (MiB). */
  editMiB: number;
  streamMiB: number;
  /** --cache-size of the streaming mount. */
  streamCacheSize: string;
  log(msg: string): void;
}

/** What every measurement group shares: one server process, one user, a folder for everything. */
interface Bench {
  work: string;
  serverData: string;
  url: string;
  token: string;
  client: StratusClient;
  root: NodeInfo;
  config: ServerConfig;
  /** Page cache drop for all files at once (root); else per file, which cannot drop dentries. */
  dropAll: boolean;
  /** rclone's version line, or undefined where it cannot run (the rclone column stays empty). */
  rclone: string | undefined;
  mounts: Set<MountProcess>;
  log(msg: string): void;
}

export async function benchMount(workDir: string, o: MountBenchOptions): Promise<Section[]> {
  const work = await fs.mkdtemp(path.join(workDir, 'mount-'));
  const serverData = path.join(work, 'server');
  const token = await addUser('bench', ['--data', serverData]);
  const server = await startServe(['--data', serverData]);
  const client = new StratusClient({ server: server.url, token, connections: 32 });
  const mounts = new Set<MountProcess>();
  try {
    const [root, config, dropAll] = await Promise.all([client.root(), client.config(), dropAllPageCache()]);
    const rclone = await ensureRclone(o.log).catch((err: Error) => {
      o.log(`rclone mount is left out of the mount group: ${err.message}`);
      return undefined;
    });
    const b: Bench = { work, serverData, url: server.url, token, client, root, config, dropAll, rclone, mounts, log: o.log };
    if (!dropAll) o.log('cannot write /proc/sys/vm/drop_caches (not root?): dropping the page cache per file with dd iflag=nocache');
    return [
      await benchReads(b, o.fileMiB * MiB),
      await benchTree(b, o.treeDirs, o.treeFiles),
      await benchWrites(b, o.writeMiB * MiB, o.editMiB * MiB),
      await benchStream(b, o.streamMiB * MiB, o.streamCacheSize),
    ];
  } finally {
    for (const m of mounts) await m.stop();
    await client.close();
    await server.stop();
    await fs.rm(work, { recursive: true, force: true });
  }
}

// --- 1–4: reads ---------------------------------------------------------------------------------

async function benchReads(b: Bench, size: number): Promise<Section> {
  const name = 'read.bin';
  const native = path.join(b.work, name);
  b.log(`reads: writing ${size / MiB} MiB of random bytes, uploading them through the API`);
  await writeRandomFile(native, size);
  await uploadFile(b, native, name);
  const offset = Math.floor((size * 900) / 1024 / 4096) * 4096;

  const cacheDir = await freshDir(b, 'cache');
  const first = await withMount(b, { cacheDir }, async (mnt) => {
    const file = path.join(mnt, name);
    await dropPageCache(b, [native, blocksDir(b)]);
    const cold = await catSeconds(file);
    const warm = Math.min(await catSeconds(file), await catSeconds(file));
    await run('cmp', [file, native]).catch(() => {
      throw new Error(`${file} read through the mount differs from what was uploaded`);
    });
    return { cold, warm };
  });
  // Remount on the same cache folder: every block is on local disk, none in memory.
  const fromDisk = await withMount(b, { cacheDir }, async (mnt) => {
    await dropPageCache(b, [native, path.join(cacheDir, 'blocks')]);
    return catSeconds(path.join(mnt, name));
  });
  const small = await withMount(b, {}, async (mnt) => {
    await dropPageCache(b, [native, blocksDir(b)]);
    return readSmallMs(path.join(mnt, name), offset);
  });

  // rclone over the same bytes: its webdav server serves a folder holding a hard link of the file.
  const served = await freshDir(b, 'rclone-served');
  await fs.link(native, path.join(served, name));
  const rcWork = await freshDir(b, 'rclone');
  const rc = await withRclone(b, rcWork, served, async (mnt) => {
    const file = path.join(mnt, name);
    await dropPageCache(b, [native]);
    const cold = await catSeconds(file);
    const warm = Math.min(await catSeconds(file), await catSeconds(file));
    await run('cmp', [file, native]);
    return { cold, warm };
  });
  const rcFromDisk = await withRclone(b, rcWork, served, async (mnt) => {
    await dropPageCache(b, [native, path.join(rcWork, 'rclone-cache')]);
    return catSeconds(path.join(mnt, name));
  });
  const rcSmall = await withRclone(b, await freshDir(b, 'rclone'), served, async (mnt) => {
    await dropPageCache(b, [native]);
    return readSmallMs(path.join(mnt, name), offset);
  });
  await fs.rm(served, { recursive: true });

  await dropPageCache(b, [native]);
  const nativeCold = await catSeconds(native);
  const nativeWarm = Math.min(await catSeconds(native), await catSeconds(native));
  await dropPageCache(b, [native]);
  const nativeSmall = await readSmallMs(native, offset);
  await fs.rm(native);

  const mbs = (s: number) => size / MB / s;
  const rcMbs = (s: number | undefined) => (s === undefined ? undefined : mbs(s));
  return {
    title: `Mount: reads of a ${fmtSize(size)} file (random bytes, server on loopback)`,
    figures: [
      { what: 'cold sequential read, `cat` (MB/s)', stratus: mbs(first.cold), native: mbs(nativeCold), rclone: rcMbs(rc?.cold) },
      { what: 're-read from the disk cache, remounted, page cache dropped (MB/s)', stratus: mbs(fromDisk), native: mbs(nativeCold), rclone: rcMbs(rcFromDisk) },
      { what: 're-read warm, page cache (MB/s)', stratus: mbs(first.warm), native: mbs(nativeWarm), rclone: rcMbs(rc?.warm) },
      { what: `4 KiB read at ${fmtSize(offset)}, cold: open + pread + close (ms)`, stratus: small.total, native: nativeSmall.total, rclone: rcSmall?.total },
      { what: '… of which the pread (ms)', stratus: small.pread, native: nativeSmall.pread, rclone: rcSmall?.pread },
    ],
    notes: [
      b.dropAll
        ? 'Cold = page cache, dentries and inodes dropped (`sync; echo 3 > /proc/sys/vm/drop_caches`) right before.'
        : 'Cold = page cache of the files involved dropped with `dd iflag=nocache` (no root: dentries and inodes stay cached, so native metadata figures are warm).',
      'Cold mount reads start from a fresh mount on an empty cache folder: the folder listing, the manifest and every block come from the server.',
      'The disk-cache row compares with the cold native read (both read local disk).',
      rcloneNote(b, 'the same file, hard-linked into the folder `rclone serve webdav` serves; cold = fresh rclone cache folder, disk cache = rclone remounted on its cache folder'),
    ],
  };
}

/** open + one 4 KiB pread + close, in this process (never the mount's): the whole and the pread alone (ms). */
async function readSmallMs(file: string, offset: number): Promise<{ total: number; pread: number }> {
  const ms = (since: bigint) => Number(process.hrtime.bigint() - since) / 1e6;
  const start = process.hrtime.bigint();
  const fh = await fs.open(file, 'r');
  let pread: number;
  try {
    const readStart = process.hrtime.bigint();
    const { bytesRead } = await fh.read(Buffer.alloc(4096), 0, 4096, offset);
    pread = ms(readStart);
    if (bytesRead !== 4096) throw new Error(`short read of ${file} at ${offset}: ${bytesRead} bytes`);
  } finally {
    await fh.close();
  }
  return { total: ms(start), pread };
}

// --- 5: metadata ----------------------------------------------------------------------------------

async function benchTree(b: Bench, dirs: number, files: number): Promise<Section> {
  const perDir = Math.ceil(files / dirs);
  const total = dirs * perDir;
  b.log(`tree: creating ${dirs} folders × ${perDir} files on the server (batches of ${CREATE_BATCH}) and on local disk`);
  const createSeconds = await seconds(() => createRemoteTree(b, dirs, perDir));
  const singles = Math.min(total, 10_000);
  b.log(`tree: ${singles} more creates, one per request (32 in flight)`);
  const singleSeconds = await seconds(() => createSingly(b, singles));
  const native = path.join(b.work, 'tree-native');
  await createLocalTree(native, dirs, perDir);

  const find = (dir: string) => runQuiet('find', [dir]);
  const ls = (dir: string) => runQuiet('ls', ['-lR', dir]);
  const onMount = async (tool: (dir: string) => Promise<unknown>) =>
    withMount(b, {}, async (mnt) => {
      const dir = path.join(mnt, 'tree');
      await dropPageCache(b, [blocksDir(b)]);
      const cold = await seconds(() => tool(dir));
      const warm = await seconds(() => tool(dir));
      await checkTreeCount(dir, total);
      return { cold, warm };
    });
  const onNative = async (tool: (dir: string) => Promise<unknown>) => {
    await dropPageCache(b, []);
    const cold = await seconds(() => tool(native));
    return { cold, warm: await seconds(() => tool(native)) };
  };
  const onRclone = async (tool: (dir: string) => Promise<unknown>) =>
    withRclone(b, await freshDir(b, 'rclone'), native, async (mnt) => {
      await dropPageCache(b, []);
      const cold = await seconds(() => tool(mnt));
      const warm = await seconds(() => tool(mnt));
      await checkTreeCount(mnt, total);
      return { cold, warm };
    });
  const [mFind, mLs, nFind, nLs] = [await onMount(find), await onMount(ls), await onNative(find), await onNative(ls)];
  const [rFind, rLs] = [await onRclone(find), await onRclone(ls)];
  await fs.rm(native, { recursive: true, force: true });
  return {
    title: `Mount: metadata, ${dirs} folders × ${perDir} files (${total} entries)`,
    figures: [
      { what: 'creates through the API, one per request, 32 in flight (per s)', stratus: singles / singleSeconds },
      { what: `creates through the API, POST /v1/batch of ${CREATE_BATCH}, 2 in flight (per s)`, stratus: (total + dirs) / createSeconds },
      { what: '`find`, cold (s)', stratus: mFind.cold, native: nFind.cold, rclone: rFind?.cold },
      { what: '`find`, warm (s)', stratus: mFind.warm, native: nFind.warm, rclone: rFind?.warm },
      { what: '`ls -lR`, cold (s)', stratus: mLs.cold, native: nLs.cold, rclone: rLs?.cold },
      { what: '`ls -lR`, warm (s)', stratus: mLs.warm, native: nLs.warm, rclone: rLs?.warm },
    ],
    notes: [
      'Cold = fresh mount on an empty cache folder: every listing comes from the server. Warm = the same command again on that mount.',
      rcloneNote(b, 'the native tree served by `rclone serve webdav`; cold = a fresh rclone mount, warm = the same command again on it'),
      `The tree was made through the HTTP API in batches: ${total + dirs} creates in ${createSeconds.toFixed(1)} s. The creates one per request make empty files in a folder of their own.`,
    ],
  };
}

/** Operations per POST /v1/batch when the bench makes trees. */
const CREATE_BATCH = 1000;

/** `tree/dNNNN/fNNNNN.txt`, through POST /v1/batch (2 in flight): each folder with its first files, then the rest of them. */
async function createRemoteTree(b: Bench, dirs: number, perDir: number): Promise<void> {
  const top = await b.client.create({ parent_id: b.root.id, name: 'tree', kind: 'dir' });
  const step = CREATE_BATCH - 1;
  const jobs: Array<() => Promise<void>> = [];
  for (let d = 0; d < dirs; d++) {
    let made!: (id: string) => void;
    const dirId = new Promise<string>((resolve) => (made = resolve));
    for (let from = 0; from < perDir; from += step) {
      const first = from === 0;
      const to = Math.min(perDir, from + step);
      // Started in order: the first batch of a folder is in flight or done when a later one waits for its id.
      jobs.push(async () => {
        const parent = first ? '$0' : await dirId;
        const ops: BatchOp[] = first ? [{ op: 'create', node: { parent_id: top.id, name: dirName(d), kind: 'dir' } }] : [];
        for (let i = from; i < to; i++) ops.push({ op: 'create', node: { parent_id: parent, name: fileName(i), kind: 'file' } });
        const { results } = await b.client.batch(ops);
        const failed = results.find((r) => !('node' in r));
        if (failed) throw new Error(`a create of the tree failed: ${JSON.stringify(failed)}`);
        if (first && 'node' in results[0]!) made(results[0].node.id);
      });
    }
  }
  await parallel(jobs.length, 2, (i) => jobs[i]!());
}

/** `count` empty files, one POST /v1/nodes each, 32 in flight, in a folder of their own. */
async function createSingly(b: Bench, count: number): Promise<void> {
  const dir = await b.client.create({ parent_id: b.root.id, name: 'singles', kind: 'dir' });
  await parallel(count, 32, (i) => b.client.create({ parent_id: dir.id, name: fileName(i), kind: 'file' }));
}

async function createLocalTree(root: string, dirs: number, perDir: number): Promise<void> {
  for (let d = 0; d < dirs; d++) await fs.mkdir(path.join(root, dirName(d)), { recursive: true });
  await parallel(dirs * perDir, 64, (i) => fs.writeFile(path.join(root, dirName(Math.floor(i / perDir)), fileName(i % perDir)), ''));
}

const dirName = (d: number) => `d${String(d).padStart(4, '0')}`;
const fileName = (f: number) => `f${String(f).padStart(5, '0')}.txt`;

/** The tree as the mount lists it has every file (a listing that lost entries would look fast). */
async function checkTreeCount(dir: string, files: number): Promise<void> {
  const { stdout } = await run('find', [dir, '-type', 'f'], { maxBuffer: 256 * MiB });
  const seen = stdout.split('\n').filter(Boolean).length;
  if (seen !== files) throw new Error(`find ${dir} saw ${seen} files, not ${files}`);
}

// --- 6–7: writes ----------------------------------------------------------------------------------

async function benchWrites(b: Bench, writeSize: number, editSize: number): Promise<Section> {
  b.log(`writes: ${fmtSize(writeSize)} copied in, then a one-byte insert into a ${fmtSize(editSize)} file`);
  const src = path.join(b.work, 'write-src.bin');
  const editA = path.join(b.work, 'edit-a.bin');
  const editB = path.join(b.work, 'edit-b.bin');
  await writeRandomFile(src, writeSize);
  await writeRandomFile(editA, editSize);
  await writeWithInsert(editA, editB, Math.floor(editSize / 2));

  const r = await withMount(b, {}, async (mnt) => {
    const copyIn = async (from: string, name: string, size: number) => {
      const before = (await remoteChild(b, name))?.head_version ?? 0;
      return seconds(async () => {
        await run('cp', [from, path.join(mnt, name)]);
        await waitCommitted(b, name, size, before);
      });
    };
    const write = await copyIn(src, 'write.bin', writeSize);
    await copyIn(editA, 'edit.bin', editSize);
    const before = await duBytes(blocksDir(b));
    const edit = await copyIn(editB, 'edit.bin', editSize + 1);
    return { write, edit, uploaded: (await duBytes(blocksDir(b))) - before };
  });
  const nativeCopy = (from: string) =>
    seconds(async () => {
      const to = path.join(b.work, 'copy.bin');
      await run('cp', [from, to]);
      await run('sync', [to]);
      await fs.rm(to);
    });
  const nWrite = await nativeCopy(src);
  const nEdit = await nativeCopy(editB);
  // rclone uploads a closed file after --vfs-write-back (default 5 s): 0 s for the table, the default for a note.
  const rcWrites = async (writeBack: string) => {
    const served = await freshDir(b, 'rclone-served');
    try {
      return await withRclone(
        b,
        await freshDir(b, 'rclone'),
        served,
        async (mnt, rc) => {
          const copyIn = (from: string, name: string, size: number) =>
            seconds(async () => {
              await run('cp', [from, path.join(mnt, name)]);
              await waitUploaded(rc, path.join(served, name), size);
            });
          const write = await copyIn(src, 'write.bin', writeSize);
          await copyIn(editA, 'edit.bin', editSize);
          const before = await rc.transferredBytes();
          const edit = await copyIn(editB, 'edit.bin', editSize + 1);
          return { write, edit, uploaded: (await rc.transferredBytes()) - before };
        },
        ['--vfs-write-back', writeBack],
      );
    } finally {
      await fs.rm(served, { recursive: true, force: true });
    }
  };
  const rc = await rcWrites('0s');
  const rcDefault = await rcWrites('5s');
  await Promise.all([src, editA, editB].map((f) => fs.rm(f)));
  return {
    title: 'Mount: writes (until the server has committed the new version)',
    figures: [
      { what: `${fmtSize(writeSize)} \`cp\` in, until committed vs \`cp\` + \`sync\` (s)`, stratus: r.write, native: nWrite, rclone: rc?.write },
      { what: `${fmtSize(writeSize)} \`cp\` in, until committed vs \`cp\` + \`sync\` (MB/s)`, stratus: writeSize / MB / r.write, native: writeSize / MB / nWrite, rclone: rc && writeSize / MB / rc.write },
      { what: `${fmtSize(editSize)} file with one byte inserted mid-file, \`cp\` over it until committed (s)`, stratus: r.edit, native: nEdit, rclone: rc?.edit },
      { what: 'bytes uploaded for that one-byte insert vs the whole file (MiB)', stratus: r.uploaded / MiB, native: (editSize + 1) / MiB, rclone: rc && rc.uploaded / MiB },
    ],
    notes: [
      'Committed = the server lists the node with a new head version of the right size (polled every 20 ms through the API).',
      "Uploaded = growth of the server's blocks folder (content-defined chunking: only the chunks around the insert are new).",
      rcloneNote(
        b,
        `\`rclone mount --vfs-write-back 0s\`; committed = the served folder holds the whole file and rclone's upload queue is empty (polled every 20 ms); uploaded = rclone's transferred bytes${rcDefault ? `. With rclone's default --vfs-write-back 5s the ${fmtSize(writeSize)} copy takes ${rcDefault.write.toFixed(2)} s` : ''}`,
      ),
    ],
  };
}

/** Polls until rclone has uploaded `served` (the file in the folder its webdav server serves) whole and has nothing queued. */
async function waitUploaded(rc: RcloneMount, served: string, size: number, timeoutMs = 600_000): Promise<void> {
  await pollUntil(
    async () => {
      const st = await fs.stat(served).catch(() => undefined);
      return st?.size === size && (await rc.pendingUploads()) === 0 ? true : undefined;
    },
    { timeoutMs, everyMs: 20, what: `rclone to upload ${served} (${size} bytes)`, why: rc.stderr },
  );
}

async function remoteChild(b: Bench, name: string): Promise<NodeInfo | undefined> {
  return (await b.client.allChildren(b.root.id)).find((n) => n.name === name);
}

/** Polls the server until `name` (in the root) has a head version above `after` holding `size` bytes. */
async function waitCommitted(b: Bench, name: string, size: number, after: number, timeoutMs = 600_000): Promise<void> {
  let node: NodeInfo | undefined;
  await pollUntil(
    async () => {
      node = await remoteChild(b, name);
      return node && node.head_version > after && node.size === size ? true : undefined;
    },
    { timeoutMs, everyMs: 20, what: `${name} committed with ${size} bytes`, why: () => `server has ${JSON.stringify(node)}` },
  );
}

/** `to` = `from` with one byte inserted at `at`. */
async function writeWithInsert(from: string, to: string, at: number): Promise<void> {
  await pipeline(async function* () {
    yield* createReadStream(from, { end: at - 1 });
    yield Buffer.from('!');
    yield* createReadStream(from, { start: at });
  }, createWriteStream(to));
}

// --- 9: streaming ---------------------------------------------------------------------------------

async function benchStream(b: Bench, size: number, cacheSize: string): Promise<Section> {
  const blockSize = 4 * MiB;
  const distinct = Math.max(1, Math.min(64, Math.floor(size / blockSize)));
  const count = Math.floor(size / blockSize);
  const total = count * blockSize;
  b.log(`stream: a ${fmtSize(total)} file of ${distinct} distinct 4 MiB blocks repeated, read through a mount with --cache-size ${cacheSize}`);
  // The native baseline reads the same bytes: the distinct blocks as one file, `cat` as often as it takes.
  const native = path.join(b.work, 'stream-blocks.bin');
  const blocks: BlockRef[] = [];
  const fh = await fs.open(native, 'w');
  try {
    for (let i = 0; i < distinct; i++) {
      const bytes = crypto.randomBytes(blockSize);
      blocks.push({ hash: blake3Hex(bytes), size: blockSize });
      await b.client.putBlock(blocks[i]!.hash, bytes);
      await fh.write(bytes);
    }
  } finally {
    await fh.close();
  }
  await commitFile(b, 'stream.bin', Array.from({ length: count }, (_, i) => blocks[i % distinct]!));

  const cacheDir = await freshDir(b, 'cache');
  const r = await withMount(b, { cacheDir, cacheSize }, async (mnt, pid) => {
    await dropPageCache(b, [blocksDir(b)]);
    const idleKiB = await rssKiB(pid);
    const sampler = sampleRss(pid, 50);
    const s = await catSeconds(path.join(mnt, 'stream.bin')).finally(() => sampler.stop());
    return { s, idleKiB, peakKiB: sampler.peakKiB(), cachedBytes: await duBytes(path.join(cacheDir, 'blocks')) };
  });
  await fs.rm(cacheDir, { recursive: true, force: true });
  const repeats = Array.from({ length: Math.ceil(total / (distinct * blockSize)) }, () => native);
  const nativeS = await seconds(() => runQuiet('cat', repeats));
  await fs.rm(native);
  return {
    title: `Mount: streaming ${fmtSize(total)} through a mount with --cache-size ${cacheSize}`,
    figures: [
      { what: '`cat` of the file (MB/s)', stratus: total / MB / r.s, native: (repeats.length * distinct * blockSize) / MB / nativeS },
      { what: 'mount RSS before the read (MiB)', stratus: r.idleKiB / 1024 },
      { what: 'mount RSS, peak during the read (MiB)', stratus: r.peakKiB / 1024 },
      { what: 'disk cache after the read (MiB)', stratus: r.cachedBytes / MiB },
    ],
    notes: [
      `The file is ${distinct} distinct blocks repeated (the server stores ${fmtSize(distinct * blockSize)}); the first pass fetches them, later passes read the disk cache.`,
      `Native = \`cat\` of those ${distinct} blocks as one file, ${repeats.length} times (page cache after the first). RSS = VmRSS of the mount process, sampled every 50 ms.`,
    ],
  };
}

function sampleRss(pid: number, everyMs: number): { stop(): void; peakKiB(): number } {
  let peak = 0;
  const timer = setInterval(() => {
    rssKiB(pid).then(
      (kib) => (peak = Math.max(peak, kib)),
      () => undefined,
    );
  }, everyMs);
  return { stop: () => clearInterval(timer), peakKiB: () => peak };
}

async function rssKiB(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (!match) throw new Error(`no VmRSS for process ${pid}`);
  return Number(match[1]);
}

// --- helpers ------------------------------------------------------------------------------------

/** Starts a mount (fresh cache folder unless given), runs `fn` on its mountpoint, always stops it. */
async function withMount<T>(b: Bench, opts: { cacheDir?: string; cacheSize?: string }, fn: (mountpoint: string, pid: number) => Promise<T>): Promise<T> {
  const mountpoint = await freshDir(b, 'mnt');
  const cacheDir = opts.cacheDir ?? (await freshDir(b, 'cache'));
  const mount = await startMount({ mountpoint, server: b.url, token: b.token, cacheDir, cacheSize: opts.cacheSize ?? '4GB' });
  b.mounts.add(mount);
  try {
    return await fn(mountpoint, mount.pid);
  } catch (err) {
    throw new Error(`${(err as Error).message}\n--- mount stderr ---\n${mount.stderr().slice(-4000)}`, { cause: err });
  } finally {
    await mount.stop();
    b.mounts.delete(mount);
    await fs.rmdir(mountpoint);
    if (!opts.cacheDir) await fs.rm(cacheDir, { recursive: true, force: true });
  }
}

/** Runs `fn` on an rclone mount of `served` (work folder `work`: a second call on it finds rclone's cache), always stops it; undefined without rclone. */
async function withRclone<T>(b: Bench, work: string, served: string, fn: (mountpoint: string, rc: RcloneMount) => Promise<T>, mountArgs: string[] = []): Promise<T | undefined> {
  if (!b.rclone) return undefined;
  const rc = await startRclone(work, served, mountArgs);
  try {
    return await fn(rc.mountpoint, rc);
  } catch (err) {
    throw new Error(`${(err as Error).message}\n--- rclone stderr ---\n${rc.stderr().slice(-4000)}`, { cause: err });
  } finally {
    await rc.stop();
  }
}

function rcloneNote(b: Bench, how: string): string {
  return b.rclone ? `rclone mount (${b.rclone}): ${how}.` : 'rclone mount: not measured (see the bench log for why).';
}

function freshDir(b: Bench, prefix: string): Promise<string> {
  return fs.mkdtemp(path.join(b.work, `${prefix}-`));
}

function blocksDir(b: Bench): string {
  return path.join(b.serverData, 'blocks');
}

export async function dropAllPageCache(): Promise<boolean> {
  try {
    await run('sync');
    await fs.writeFile('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch {
    return false;
  }
}

/** Drops the page cache: everything (root), else only of the files under `paths`. */
async function dropPageCache(b: Bench, paths: string[]): Promise<void> {
  await run('sync');
  if (b.dropAll) {
    await fs.writeFile('/proc/sys/vm/drop_caches', '3');
    return;
  }
  for (const p of paths) {
    for (const file of await filesUnder(p)) await run('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);
  }
}

async function filesUnder(p: string): Promise<string[]> {
  const st = await fs.stat(p).catch(() => undefined);
  if (!st) return [];
  if (!st.isDirectory()) return [p];
  const entries = await fs.readdir(p, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

async function duBytes(dir: string): Promise<number> {
  let total = 0;
  for (const file of await filesUnder(dir)) total += (await fs.stat(file)).size;
  return total;
}

export function catSeconds(file: string): Promise<number> {
  return seconds(() => runQuiet('cat', [file]));
}
