import fs from 'node:fs/promises';
import path from 'node:path';
import { fmtSize, runQuiet, writeRandomFile } from './helpers.js';
import { ensureRclone } from './rclone.js';
import { markdownTable, num } from './report.js';
import { makeRepo, makeTree, packNpm, packTar, type MadeTree } from './tree-fixture.js';
import { byteAt, localFiles, nativeTarget, rcloneTarget, stratusTarget, type Counters, type Expect, type Target, type TargetName } from './tree-targets.js';

/**
 * The `tree` group: what shell tools do to many small files, on native disk, on an rclone mount and
 * on a Stratus drive, all measured in the same run: `tar x` of a node_modules-like tree, `git
 * clone` of a local repository, `tar xzf` of real npm packages, renaming, moving and removing the
 * tree, and a one-byte edit of a big file. Each figure twice: until the command returns, and until
 * the server has everything (native: the command, then `sync`). The edit also counts the bytes
 * the tool hashed and uploaded for it.
 */

export interface TreeOpsOptions {
  /** Files of the unpacked tree, and its folders. */
  files: number;
  dirs: number;
  /** Size of the file that gets a one-byte edit (bytes). */
  editBytes: number;
  /** Packages of the project's node_modules whose npm tarballs are unpacked. */
  packages: string[];
  log(msg: string): void;
}

interface Fixtures {
  tree: MadeTree;
  tarball: string;
  repo: string;
  repoTree: MadeTree;
  npm: { name: string; tarball: string; files: number; bytes: number }[];
  edit: { file: string; size: number; offset: number; value: number };
}

interface Op {
  /** The row's label. */
  what: string;
  /** Untimed set-up. */
  prepare?(dir: string): Promise<void>;
  /** The timed command; resolves with its stderr. */
  run(dir: string, t: Target): Promise<string>;
  /** What the server must hold afterwards, from the same operation's result in `native` (the native folder). */
  expect(native: string): Promise<Expect>;
  /** Also count the bytes hashed and uploaded. */
  counted?: boolean;
}

interface OpResult {
  returnedS?: number;
  committedS?: number;
  counted?: Counters;
  /** Symbolic links tar could not make (tolerated). */
  linksRefused?: number;
  error?: string;
}

const TARGETS: TargetName[] = ['native', 'rclone', 'Stratus'];

export async function benchTreeOps(workDir: string, o: TreeOpsOptions): Promise<string> {
  const work = await fs.mkdtemp(path.join(workDir, 'tree-'));
  try {
    const rcloneVersion = await ensureRclone(o.log);
    const fx = await makeFixtures(path.join(work, 'fixtures'), o);
    const ops = operations(fx);
    const expects: Expect[] = [];
    const results = {} as Record<TargetName, OpResult[]>;
    const problems: string[] = [];
    for (const name of TARGETS) {
      const dir = path.join(work, name.toLowerCase());
      await fs.mkdir(dir);
      o.log(`tree: ${name}`);
      const t = await startTarget(name, dir, fx.edit.file);
      try {
        results[name] = await runOps(t, ops, expects, o.log);
        problems.push(...t.problems.map((p) => `${name}: ${p}`));
      } finally {
        await t.stop();
        await fs.rm(dir, { recursive: true, force: true });
      }
    }
    return render(fx, ops, results, problems, rcloneVersion);
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

async function makeFixtures(dir: string, o: TreeOpsOptions): Promise<Fixtures> {
  o.log(`tree: making the fixtures: a tree of ${o.files} files in ${o.dirs} folders, a git repository, npm tarballs of ${o.packages.join(', ')}, a ${fmtSize(o.editBytes)} file`);
  const treeDir = path.join(dir, 'tree');
  const tree = await makeTree(treeDir, { files: o.files, dirs: o.dirs, seed: 'stratus-bench-tree' });
  const tarball = path.join(dir, 'tree.tar');
  await packTar(treeDir, tarball);
  await fs.rm(treeDir, { recursive: true });
  const repo = path.join(dir, 'repo');
  // "A few thousand files" at full size: 30 % of the tree.
  const repoTree = await makeRepo(repo, { files: Math.max(1, Math.round(o.files * 0.3)), dirs: Math.max(3, Math.round(o.dirs * 0.3)), seed: 'stratus-bench-repo' });
  const npm = [];
  for (const name of o.packages) {
    const packed = await packNpm(name, path.join(dir, 'npm'), o.log);
    npm.push({ name, ...packed, bytes: (await fs.stat(packed.tarball)).size });
  }
  const file = path.join(dir, 'edit.bin');
  await writeRandomFile(file, o.editBytes);
  const offset = Math.floor(o.editBytes / 2);
  const value = (await byteAt(file, offset))! ^ 0xff;
  return { tree, tarball, repo, repoTree, npm, edit: { file, size: o.editBytes, offset, value } };
}

/** The target, with the file to edit already on its "server" (and so not counted as written). */
async function startTarget(name: TargetName, dir: string, editFile: string): Promise<Target> {
  if (name === 'Stratus') return stratusTarget(dir, [{ local: editFile, name: 'edit.bin' }]);
  const folder = path.join(dir, name === 'native' ? 'files' : 'served');
  await fs.mkdir(folder);
  await fs.copyFile(editFile, path.join(folder, 'edit.bin'));
  return name === 'native' ? nativeTarget(folder) : rcloneTarget(dir, folder);
}

/** The regular files below `native/root`, as an expectation (links and `skip`ped paths left out). */
async function fromNative(native: string, root: string, skip: (rel: string) => boolean = () => false): Promise<Expect> {
  const listed = await localFiles(path.join(native, root));
  if (!listed) throw new Error(`native: ${root} is missing after the operation`);
  return { root, files: listed.files, ignore: (rel) => listed.links.has(rel) || skip(rel) };
}

function operations(fx: Fixtures): Op[] {
  const tree = fx.tree;
  const untar = (tarball: string, into: string, flags: string) => (dir: string, t: Target) =>
    runQuiet('tar', [flags, tarball, '--no-same-owner', '-C', path.join(dir, into)], { tolerate: t.tarTolerates });
  const ops: Op[] = [
    {
      what: `\`tar x\` of ${tree.files} files + ${tree.links} links in ${tree.dirs} folders (${fmtSize(tree.bytes)})`,
      run: untar(fx.tarball, '', '-xf'),
      expect: (native) => fromNative(native, 'tree'),
    },
    {
      what: `\`git clone --no-local\` of a repository of ${fx.repoTree.files} files + ${fx.repoTree.links} links in ${fx.repoTree.dirs} folders (${fmtSize(fx.repoTree.bytes)})`,
      run: (dir) => runQuiet('git', ['clone', '-q', '--no-local', fx.repo, path.join(dir, 'clone')]),
      expect: (native) => fromNative(native, 'clone', (rel) => rel.startsWith('.git/')),
    },
  ];
  for (const p of fx.npm) {
    const into = `npm-${p.name}`;
    ops.push({
      what: `\`tar xzf\` of the npm tarball ${path.basename(p.tarball)} (${p.files} files, ${fmtSize(p.bytes)} packed)`,
      prepare: (dir) => fs.mkdir(path.join(dir, into)),
      run: untar(p.tarball, into, '-xzf'),
      expect: (native) => fromNative(native, into),
    });
  }
  const edit = { size: fx.edit.size, offset: fx.edit.offset, value: fx.edit.value };
  ops.push(
    {
      what: "`mv` of the tree's top folder to another name",
      run: (dir) => runQuiet('mv', [path.join(dir, 'tree'), path.join(dir, 'tree-renamed')]),
      expect: async (native) => ({ ...(await fromNative(native, 'tree-renamed')), gone: ['tree'] }),
    },
    {
      what: '`mv` of that folder into another folder',
      prepare: (dir) => fs.mkdir(path.join(dir, 'moved')),
      run: (dir) => runQuiet('mv', [path.join(dir, 'tree-renamed'), path.join(dir, 'moved')]),
      expect: async (native) => ({ ...(await fromNative(native, 'moved/tree-renamed')), gone: ['tree-renamed'] }),
    },
    {
      what: '`rm -r` of the tree',
      run: (dir) => runQuiet('rm', ['-r', path.join(dir, 'moved', 'tree-renamed')]),
      expect: async () => ({ gone: ['moved/tree-renamed'] }),
    },
    {
      what: `one byte overwritten mid-file (\`dd conv=notrunc\`) in a ${fmtSize(edit.size)} file on the server, read once through the mount`,
      prepare: async (dir) => void (await runQuiet('cat', [path.join(dir, 'edit.bin')])),
      run: (dir) =>
        runQuiet('dd', [`of=${path.join(dir, 'edit.bin')}`, 'bs=1', `seek=${edit.offset}`, 'count=1', 'conv=notrunc', 'status=none'], { input: Buffer.from([edit.value]) }),
      expect: async () => ({ byte: { path: 'edit.bin', ...edit } }),
      counted: true,
    },
  );
  return ops;
}

/** Runs every operation on `t` in order; `expects` is filled from the native run (the first). */
async function runOps(t: Target, ops: Op[], expects: Expect[], log: (msg: string) => void): Promise<OpResult[]> {
  const results: OpResult[] = [];
  for (const [i, op] of ops.entries()) {
    log(`tree: ${t.name}: ${op.what}`);
    try {
      await op.prepare?.(t.dir);
      const before = op.counted ? await t.counters() : undefined;
      const start = Date.now();
      const stderr = await op.run(t.dir, t);
      const returnedAt = Date.now();
      const committedAt = await t.settled(returnedAt, expects[i] ?? {});
      expects[i] ??= await op.expect(t.dir);
      const r: OpResult = { returnedS: (returnedAt - start) / 1000, committedS: (committedAt - start) / 1000 };
      const refused = stderr.match(/Cannot create symlink/g)?.length;
      if (refused) r.linksRefused = refused;
      if (before) {
        const after = await t.counters();
        const delta = (k: keyof Counters) => (after[k] === undefined || before[k] === undefined ? undefined : after[k]! - before[k]!);
        r.counted = { hashed: delta('hashed'), uploaded: delta('uploaded') };
      }
      results.push(r);
    } catch (err) {
      // Native is the reference: without it nothing can be compared.
      if (t.name === 'native') throw err;
      const tail = t.logTail();
      results.push({ error: `${(err as Error).message.split('\n')[0]}${tail ? ` (log: …${tail.slice(-600).replace(/\s+/g, ' ')})` : ''}` });
    }
  }
  return results;
}

function render(fx: Fixtures, ops: Op[], results: Record<TargetName, OpResult[]>, problems: string[], rcloneVersion: string): string {
  const rows: string[][] = [];
  const cell = (r: OpResult | undefined, v: number | undefined) => (r?.error ? '✗' : num(v));
  const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || b === 0 ? '—' : num(a / b));
  const row = (what: string, i: number, pick: (r: OpResult) => number | undefined) => {
    const [n, r, s] = TARGETS.map((name) => results[name][i]);
    const v = (x: OpResult | undefined) => (x && !x.error ? pick(x) : undefined);
    rows.push([what, cell(n, v(n)), cell(r, v(r)), cell(s, v(s)), ratio(v(s), v(n)), ratio(v(s), v(r))]);
  };
  for (const [i, op] of ops.entries()) {
    row(`${op.what}: returns (s)`, i, (x) => x.returnedS);
    row('… until committed (s)', i, (x) => x.committedS);
    if (!op.counted) continue;
    const edited = 1;
    row('… bytes hashed ÷ file size', i, (x) => (x.counted?.hashed === undefined ? undefined : x.counted.hashed / fx.edit.size));
    row('… bytes hashed ÷ bytes edited', i, (x) => (x.counted?.hashed === undefined ? undefined : x.counted.hashed / edited));
    row('… bytes uploaded ÷ file size', i, (x) => (x.counted?.uploaded === undefined ? undefined : x.counted.uploaded / fx.edit.size));
    row('… bytes uploaded ÷ bytes edited', i, (x) => (x.counted?.uploaded === undefined ? undefined : x.counted.uploaded / edited));
  }
  const refused = results.rclone.map((r) => r.linksRefused ?? 0).reduce((a, b) => a + b, 0);
  const errors = TARGETS.flatMap((name) => results[name].flatMap((r, i) => (r.error ? [`${name} failed at “${ops[i]!.what}”: ${r.error}`] : [])));
  const notes = [
    'Until committed — native: the command, then `sync` (there is no server). rclone: polled every 50 ms until its VFS upload queue is empty (`vfs/stats` of its remote control: uploads in progress + queued) and the folder `rclone serve webdav` serves holds what is expected. Stratus: polled every 20 ms until the drive\'s status record (what `stratus status --json` reads; rewritten within 0.1 s of any change of its commit queue) reports 0 pending commits, written after the command returned (or none written within 1 s after it: nothing was pending); committed = the time its queue last changed (`pendingChangedAt`), or the return when that was before. The server\'s tree is then checked against what is expected through the API, outside the timing.',
    'Expected = what the same command made on native disk: every regular file and its size (links and the clone\'s `.git/` left out: rclone mount makes no links), removed and moved-away paths gone, the edited byte in place.',
    `rclone: ${rcloneVersion}, \`rclone serve webdav\` of a local folder on loopback and \`rclone mount --vfs-cache-mode full\` of it, rclone's defaults otherwise: its uploads start 5 s after a file's last use (\`--vfs-write-back 5s\`), which its "until committed" includes (with 0s, rclone 1.60 fails \`git clone\`: config.lock "File exists"). Stratus: \`stratus serve\` (SQLite) on loopback and one \`stratus mount\`. Each tool runs the rows in order on one mount.`,
    `The edit: bytes hashed = growth of the drive's \`hashedBytes\` (the chunker pool: staging files chunked at commit, cached blocks checked), bytes uploaded = growth of its \`uploadedBytes\`, both in its status record; rclone's = growth of \`core/stats\` bytes after the read (it hashes nothing it reports). One byte was edited.`,
    'Stratus ÷ native and Stratus ÷ rclone: above 1, Stratus took longer (or did more).',
  ];
  if (refused) notes.push(`rclone mount cannot make symbolic links: tar could not make ${refused} (it exits 2 for that; accepted, and they are not expected on rclone).`);
  notes.push(...errors, ...problems.map((p) => `Problem: ${p}`));
  return [
    '## Tree operations: native disk, rclone mount and Stratus, measured in the same run',
    markdownTable(['what', 'native', 'rclone', 'Stratus', 'Stratus ÷ native', 'Stratus ÷ rclone'], rows),
    '',
    ...notes.map((n) => `- ${n}`),
  ].join('\n');
}
