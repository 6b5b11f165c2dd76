import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import sqlite3 from 'sqlite3';
import t, { type Test } from 'tap';
import { mountDrive, remoteNode, sh, snapshot, startServerProcess, tempDir, type Drive } from '../helpers/drive.js';

/*
 * Everyday shell tools on a real FUSE mount (a `stratus mount` process) of a real `stratus serve`
 * process: cp, cat, mv, rm, mkdir, rmdir, ls, find, grep, tar, rsync, touch, chmod, git, an
 * editor's atomic save and SQLite. Every result is checked through the mount; then the mount is
 * stopped (which drains its commit queue) and the server's state is checked, and a fresh second
 * mount of the same user with an empty cache must show exactly the same tree, bytes, sizes, modes
 * and mtimes.
 *
 * The mount is another process: this one uses async fs calls and async child processes only.
 */

const execFileP = promisify(execFile);
/** A fixed locale and zone so tool output parses the same everywhere. */
const ENV = { LC_ALL: 'C', TZ: 'UTC' };

/** Runs a shell command line and never throws: exit status, stdout and stderr. */
async function shx(cmd: string, cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileP('bash', ['-c', cmd], { cwd, env: { ...process.env, ...ENV }, maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

const shc = (cmd: string, cwd: string) => sh(cmd, cwd, ENV);

/** Promise versions of the sqlite3 callback API (it runs in libuv's pool: fine against a mount of another process). */
function openDb(file: string): Promise<sqlite3.Database> {
  return new Promise((resolve, reject) => {
    const db = new sqlite3.Database(file, (err) => (err ? reject(err) : resolve(db)));
  });
}
const dbExec = (db: sqlite3.Database, sql: string) => new Promise<void>((res, rej) => db.exec(sql, (err) => (err ? rej(err) : res())));
const dbAll = <T>(db: sqlite3.Database, sql: string) => new Promise<T[]>((res, rej) => db.all(sql, (err, rows) => (err ? rej(err) : res(rows as T[]))));
const dbClose = (db: sqlite3.Database) => new Promise<void>((res, rej) => db.close((err) => (err ? rej(err) : res())));

async function errCode(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code;
  }
}

/** Polls the server until `check` holds (commits land asynchronously after close); returns its last value. */
async function eventually<T>(get: () => Promise<T>, check: (v: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await get();
    if (check(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The bytes of a file's head version, straight from the server. */
async function remoteBytes(p: string): Promise<Buffer | undefined> {
  const node = await remoteNode(client, p);
  if (!node) return undefined;
  const manifest = await client.manifest(node.id);
  return Buffer.concat(await Promise.all(manifest.blocks.map((b) => client.getBlock(b.hash))));
}

const server = await startServerProcess(t);
const { token, client } = await server.addUser('shelly');
const local = await tempDir(t, 'shell-local');
const drive: Drive = await mountDrive(t, server, token);
const m = drive.mountpoint;

/** Checks deferred until the mount is stopped: what the server holds once the queue drained. */
const serverChecks: Array<(t: Test) => Promise<void>> = [];

// Fixtures made on local disk.
const big = randomBytes(3 * 1024 * 1024 + 12345); // several chunks at the default 256K/1M/4M
await fs.writeFile(path.join(local, 'big.bin'), big);
await fs.writeFile(path.join(local, 'hello.txt'), 'hello, stratus\n');
async function makeTree(dir: string, files: Record<string, string | Buffer>): Promise<void> {
  for (const [rel, content] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await fs.writeFile(path.join(dir, rel), content);
  }
}
const srcTree = path.join(local, 'src');
await makeTree(srcTree, {
  'README.md': '# project\n',
  'a/one.txt': 'one\n',
  'a/two.txt': 'two needle two\n',
  'a/b/three.txt': 'three\n',
  'a/b/c/four.bin': randomBytes(300_000),
  'empty.txt': '',
  'x/y/deep.txt': 'deep needle\n',
});
// Distinct, whole-second mtimes in the past (2001, 2010, ...), so a kept mtime is never "now".
let stamp = 1_000_000_000;
for (const rel of ['README.md', 'a/one.txt', 'a/two.txt', 'a/b/three.txt', 'a/b/c/four.bin', 'empty.txt', 'x/y/deep.txt']) {
  stamp += 86_400 * 400 + 17;
  await fs.utimes(path.join(srcTree, rel), stamp, stamp);
}
// Folders too (deepest first: setting a folder's time after its children keeps it).
for (const rel of ['a/b/c', 'a/b', 'a', 'x/y', 'x', '.']) {
  stamp += 86_400 * 30 + 3;
  await fs.utimes(path.join(srcTree, rel), stamp, stamp);
}

/** Every path under `dir` with its mtime in whole seconds (files and folders). */
const times = (dir: string) => shc("find . -printf '%P %y %TY-%Tm-%Td_%TH:%TM:%TS\\n' | sed -E 's/\\.[0-9]+$//' | sort", dir);

t.test('cp into and out of the mount is byte-identical; cat shows the content', async (t) => {
  await shc(`cp ${local}/big.bin ${local}/hello.txt ${m}/`, local);
  t.same(await fs.readFile(path.join(m, 'big.bin')), big, 'big.bin reads back equal right after close');
  t.equal(await shc('cat hello.txt', m), 'hello, stratus\n', 'cat');
  const out = path.join(local, 'out');
  await fs.mkdir(out);
  await shc(`cp ${m}/big.bin ${m}/hello.txt ${out}/`, local);
  t.equal((await shx(`cmp ${local}/big.bin ${out}/big.bin && cmp ${local}/hello.txt ${out}/hello.txt`, local)).code, 0, 'copied out byte-identical (cmp)');
  serverChecks.push(async (t) => {
    const node = await remoteNode(client, 'big.bin');
    t.equal(node?.size, big.length, 'server: big.bin has its size');
    t.equal(node?.head_version, 1, 'server: one version');
  });
});

t.test('mkdir, mkdir -p, mv within and across folders, rm, rmdir', async (t) => {
  await shc('mkdir docs && mkdir -p deep/er/est && echo draft > docs/draft.txt && echo note > note.txt', m);
  t.ok((await fs.stat(path.join(m, 'deep/er/est'))).isDirectory(), 'mkdir -p made every level');
  await shc('mv docs/draft.txt docs/final.txt', m);
  t.equal(await errCode(fs.stat(path.join(m, 'docs/draft.txt'))), 'ENOENT', 'renamed: the old name is gone');
  t.equal(await fs.readFile(path.join(m, 'docs/final.txt'), 'utf8'), 'draft\n', 'renamed within a folder');
  await shc('mv docs/final.txt deep/er/est/ && mv note.txt docs/', m);
  t.equal(await fs.readFile(path.join(m, 'deep/er/est/final.txt'), 'utf8'), 'draft\n', 'moved across folders');
  t.equal(await fs.readFile(path.join(m, 'docs/note.txt'), 'utf8'), 'note\n', 'moved into a folder');
  t.same((await fs.readdir(path.join(m, 'docs'))).sort(), ['note.txt']);
  await shc('mkdir docs/old && mv docs/old deep/old-docs', m);
  t.ok((await fs.stat(path.join(m, 'deep/old-docs'))).isDirectory(), 'a folder moves across folders');

  const rmdirFull = await shx('rmdir deep/er', m);
  t.not(rmdirFull.code, 0, 'rmdir of a non-empty folder fails');
  t.match(rmdirFull.stderr, /Directory not empty/, rmdirFull.stderr);
  t.equal(await errCode(fs.rmdir(path.join(m, 'deep/er'))), 'ENOTEMPTY');
  t.equal((await shx('echo gone > docs/gone.txt && rm docs/gone.txt && rmdir deep/old-docs', m)).code, 0, 'rm and rmdir succeed');
  t.equal(await errCode(fs.stat(path.join(m, 'docs/gone.txt'))), 'ENOENT', 'rm removed the file');
  t.equal(await errCode(fs.stat(path.join(m, 'deep/old-docs'))), 'ENOENT', 'rmdir removed the folder');
  t.same((await fs.readdir(path.join(m, 'deep/er/est'))).sort(), ['final.txt']);

  serverChecks.push(async (t) => {
    t.equal((await remoteNode(client, 'deep/er/est/final.txt'))?.size, 6, 'server: the moved file is at its new path');
    t.equal(await remoteNode(client, 'docs/draft.txt'), undefined, 'server: not at the old one');
    t.equal(await remoteNode(client, 'docs/gone.txt'), undefined, 'server: removed file is gone');
    t.equal(await remoteNode(client, 'deep/old-docs'), undefined, 'server: removed folder is gone');
  });
});

t.test('ls -l shows names, sizes and modes; chmod changes the mode in ls and on the server', async (t) => {
  await shc('mkdir lsdir && printf 12345 > lsdir/five && head -c 70000 /dev/zero > lsdir/zeros && : > lsdir/empty && mkdir lsdir/sub', m);
  await shc('chmod 640 lsdir/five && chmod 755 lsdir/zeros && chmod 700 lsdir/sub', m);
  const lines = (await shc('ls -l --time-style=+%s lsdir', m)).trim().split('\n').slice(1); // skip "total"
  const rows = lines.map((l) => {
    const f = l.split(/\s+/);
    return { mode: f[0], size: f[4], name: f.slice(6).join(' ') };
  });
  t.same(rows, [
    { mode: '-rw-r--r--', size: '0', name: 'empty' },
    { mode: '-rw-r-----', size: '5', name: 'five' },
    { mode: 'drwx------', size: '4096', name: 'sub' },
    { mode: '-rwxr-xr-x', size: '70000', name: 'zeros' },
  ]);
  serverChecks.push(async (t) => {
    t.equal(((await remoteNode(client, 'lsdir/five'))?.mode ?? 0) & 0o7777, 0o640, 'server: chmod 640');
    t.equal(((await remoteNode(client, 'lsdir/zeros'))?.mode ?? 0) & 0o7777, 0o755, 'server: chmod 755');
    t.equal(((await remoteNode(client, 'lsdir/sub'))?.mode ?? 0) & 0o7777, 0o700, 'server: chmod 700 of a folder');
  });
});

t.test('find lists exactly the tree made; grep -r finds a word in it', async (t) => {
  await shc(`cp -r ${srcTree} tree`, m);
  const found = (await shc('find tree | sort', m)).trim().split('\n');
  t.same(found, [
    'tree',
    'tree/README.md',
    'tree/a',
    'tree/a/b',
    'tree/a/b/c',
    'tree/a/b/c/four.bin',
    'tree/a/b/three.txt',
    'tree/a/one.txt',
    'tree/a/two.txt',
    'tree/empty.txt',
    'tree/x',
    'tree/x/y',
    'tree/x/y/deep.txt',
  ]);
  t.same((await shc('find tree -type f -name "*.txt" | sort', m)).trim().split('\n'), ['tree/a/b/three.txt', 'tree/a/one.txt', 'tree/a/two.txt', 'tree/empty.txt', 'tree/x/y/deep.txt']);
  t.same((await shc('grep -rl needle tree | sort', m)).trim().split('\n'), ['tree/a/two.txt', 'tree/x/y/deep.txt'], 'grep -rl');
  t.equal((await shc('grep -rn needle tree/a', m)).trim(), 'tree/a/two.txt:1:two needle two', 'grep -rn');
  t.equal((await shx('grep -r haystack tree', m)).code, 1, 'grep -r of an absent word exits 1');
  t.equal((await shx(`diff -r ${srcTree} tree`, m)).code, 0, 'cp -r copied the tree exactly');
});

t.test('tar c of a tree in the mount and tar x into the mount round-trip (diff -r, mtimes)', async (t) => {
  // tar x into the mount: contents and mtimes as archived.
  await shc(`tar cf ${local}/src.tar -C ${srcTree} .`, local);
  await shc(`mkdir untar && tar xf ${local}/src.tar -C untar`, m);
  const d1 = await shx(`diff -r ${srcTree} untar`, m);
  t.equal(d1.code, 0, `diff -r after tar x into the mount ${d1.stdout}`);
  t.equal(await times(path.join(m, 'untar')), await times(srcTree), 'tar x kept the mtime of every file and folder');
  // tar c of a tree in the mount, extracted on local disk.
  await shc(`tar cf ${local}/mnt.tar -C ${m}/untar .`, local);
  await shc(`mkdir ${local}/back && tar xf ${local}/mnt.tar -C ${local}/back`, local);
  const d2 = await shx(`diff -r ${srcTree} ${local}/back`, local);
  t.equal(d2.code, 0, `diff -r after tar c from the mount ${d2.stdout}`);
  t.equal(await times(path.join(local, 'back')), await times(srcTree), 'the archive made in the mount carries the mtimes');
});

t.test('rsync -a into the mount keeps mtimes; a second run has nothing to do', async (t) => {
  const r = await shx(`rsync -a ${srcTree}/ ${m}/synced/`, local);
  t.equal(r.code, 0, r.stderr);
  t.equal((await shx(`diff -r ${srcTree} synced`, m)).code, 0, 'same content');
  const mtimes = (dir: string) => shc("find . -exec stat -c '%n %Y' {} + | sort", dir);
  t.equal(await mtimes(path.join(m, 'synced')), await mtimes(srcTree), 'stat %Y of every file and folder equal');
  const again = await shx(`rsync -a --itemize-changes ${srcTree}/ ${m}/synced/`, local);
  t.equal(again.code, 0, again.stderr);
  t.equal(again.stdout.split('\n').filter((l) => /^[<>c]f/.test(l)).join('\n'), '', 'rsync sees every file up to date');
  serverChecks.push(async (t) => {
    const node = await remoteNode(client, 'synced/a/b/c/four.bin');
    const want = (await fs.stat(path.join(srcTree, 'a/b/c/four.bin'))).mtimeMs;
    t.equal(node?.mtime, want, 'server: rsync -a mtime');
  });
});

t.test('cp -p and touch -d keep the given mtimes', async (t) => {
  const src = path.join(srcTree, 'a/one.txt');
  const want = Math.round((await fs.stat(src)).mtimeMs / 1000);
  await shc(`cp -p ${src} kept.txt`, m);
  t.equal(Number(await shc('stat -c %Y kept.txt', m)), want, 'cp -p');
  await shc('echo touched > touched.txt && touch -d "2015-06-07 08:09:10" touched.txt', m);
  t.equal((await shc('stat -c %Y touched.txt', m)).trim(), String(Date.UTC(2015, 5, 7, 8, 9, 10) / 1000), 'touch -d on a just-written file');
  await shc('touch -d "2012-01-02 03:04:05" hello.txt', m);
  t.equal((await shc('stat -c %Y hello.txt', m)).trim(), String(Date.UTC(2012, 0, 2, 3, 4, 5) / 1000), 'touch -d on a committed file');
  serverChecks.push(async (t) => {
    t.equal((await remoteNode(client, 'kept.txt'))?.mtime, want * 1000, 'server: cp -p mtime');
    t.equal((await remoteNode(client, 'touched.txt'))?.mtime, Date.UTC(2015, 5, 7, 8, 9, 10), 'server: touch -d mtime');
    t.equal((await remoteNode(client, 'hello.txt'))?.mtime, Date.UTC(2012, 0, 2, 3, 4, 5), 'server: touch -d mtime of a committed file');
  });
});

t.test('cp -a, touch of a new file, chmod +x of an unsaved file, mv of a folder over an empty one, rm -rf', async (t) => {
  await shc(`cp -a ${srcTree} copied-a`, m);
  t.equal(await times(path.join(m, 'copied-a')), await times(srcTree), 'cp -a keeps the mtimes of files and folders');
  t.equal((await shx(`diff -r ${srcTree} copied-a`, m)).code, 0, 'cp -a copies the content');
  await shc('touch new-empty && echo "#!/bin/sh" > run.sh && chmod +x run.sh', m);
  t.equal((await fs.stat(path.join(m, 'new-empty'))).size, 0, 'touch makes an empty file');
  t.equal((await fs.stat(path.join(m, 'run.sh'))).mode & 0o777, 0o755, 'chmod +x right after writing');
  await shc('mkdir -p mvsrc/inner && echo in > mvsrc/inner/f && mkdir mvdst && mv -T mvsrc mvdst', m);
  t.equal(await fs.readFile(path.join(m, 'mvdst/inner/f'), 'utf8'), 'in\n', 'a folder renamed over an empty folder');
  t.equal(await errCode(fs.stat(path.join(m, 'mvsrc'))), 'ENOENT');
  await shc(`cp -r ${srcTree} doomed && rm -rf doomed`, m);
  t.equal(await errCode(fs.stat(path.join(m, 'doomed'))), 'ENOENT', 'rm -rf removed the tree');
  serverChecks.push(async (t) => {
    t.equal(await remoteNode(client, 'doomed'), undefined, 'server: rm -rf');
    t.equal(((await remoteNode(client, 'run.sh'))?.mode ?? 0) & 0o777, 0o755, 'server: chmod +x');
    t.equal((await remoteBytes('mvdst/inner/f'))?.toString(), 'in\n', 'server: folder renamed over an empty folder');
    t.equal(await remoteNode(client, 'mvsrc'), undefined);
  });
});

const gitEnv = 'GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.com GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.com';
t.test('git init, add, commit, log, status and fsck inside the mount', async (t) => {
  await shc(`cp -r ${srcTree} repo`, m);
  const repo = path.join(m, 'repo');
  await shc(`git init -q -b main . && git add -A && ${gitEnv} git commit -q -m first`, repo);
  t.equal((await shx('git config --get core.symlinks', repo)).stdout, '', 'git init found that the mount has symlinks (it sets core.symlinks=false where they fail)');
  await shc(`echo more >> README.md && git add README.md && ${gitEnv} git commit -q -m second`, repo);
  t.equal((await shc('git log --format=%s', repo)).trim(), 'second\nfirst', 'git log');
  t.equal(await shc('git status --porcelain', repo), '', 'git status is clean');
  const fsck = await shx('git fsck --full --strict', repo);
  t.equal(fsck.code, 0, `git fsck: ${fsck.stdout}${fsck.stderr}`);
  t.equal((await shc('git ls-files | sort', repo)).trim().split('\n').length, 7, 'git tracks the 7 files');
  // gc packs the loose objects, deletes them and their folders.
  const gc = await shx('git gc -q --prune=now && git fsck --full --strict && git count-objects -v', repo);
  t.equal(gc.code, 0, `git gc + fsck: ${gc.stderr}`);
  t.match(gc.stdout, /^count: 0$/m, 'no loose objects left after gc');
  t.match(gc.stdout, /^packs: 1$/m, 'one pack');
  t.equal((await shc('git log --format=%s', repo)).trim(), 'second\nfirst', 'git log after gc');
});

t.test('an editor-style atomic save (write temp, rename over) makes a new version of the same node', async (t) => {
  await fs.writeFile(path.join(m, 'f.txt'), 'first draft\n');
  const before = await eventually(
    () => remoteNode(client, 'f.txt'),
    (n) => n?.head_version === 1,
  );
  t.equal(before?.head_version, 1, 'the first save is committed');
  await fs.writeFile(path.join(m, '.f.txt.swp'), 'swap\n'); // vim's swap file, written alongside
  await fs.writeFile(path.join(m, 'f.txt.tmp'), 'second draft\n');
  await fs.rename(path.join(m, 'f.txt.tmp'), path.join(m, 'f.txt'));
  await fs.unlink(path.join(m, '.f.txt.swp'));
  t.equal(await fs.readFile(path.join(m, 'f.txt'), 'utf8'), 'second draft\n', 'the new content shows');
  t.same((await fs.readdir(m)).filter((n) => n.includes('f.txt')), ['f.txt'], 'no temp or swap file left');
  serverChecks.push(async (t) => {
    const after = await remoteNode(client, 'f.txt');
    t.equal(after?.id, before?.id, 'server: the same node id as before');
    const { versions } = await client.versions(after!.id);
    t.equal(versions.length, 2, 'server: two versions of f.txt');
    t.equal(after?.size, 'second draft\n'.length);
  });
});

t.test('a temp file renamed over its target while still open for writing keeps what is written before and after', async (t) => {
  // Python's `with open(tmp) as f: f.write(...); f.flush(); os.fsync(f); os.replace(tmp, target)`.
  await fs.writeFile(path.join(m, 'cfg.json'), '{"v":1}\n');
  const before = await eventually(
    () => remoteNode(client, 'cfg.json'),
    (n) => n?.head_version === 1,
  );
  const fh = await fs.open(path.join(m, 'cfg.json.tmp'), 'w');
  await fh.write('{"v":2,');
  await fh.sync();
  await fs.rename(path.join(m, 'cfg.json.tmp'), path.join(m, 'cfg.json'));
  t.equal(await fs.readFile(path.join(m, 'cfg.json'), 'utf8'), '{"v":2,', 'the target shows the renamed content at once');
  await fh.write('"more":true}\n');
  await fh.close();
  t.equal(await fs.readFile(path.join(m, 'cfg.json'), 'utf8'), '{"v":2,"more":true}\n', 'and what was written after the rename');
  t.same((await fs.readdir(m)).filter((n) => n.startsWith('cfg.json')), ['cfg.json']);
  serverChecks.push(async (t) => {
    const after = await remoteNode(client, 'cfg.json');
    t.equal(after?.id, before?.id, 'server: cfg.json is the same node');
    t.equal((await remoteBytes('cfg.json'))?.toString(), '{"v":2,"more":true}\n', 'server: cfg.json holds everything written');
  });
});

t.test('shell redirects (>, >>, exec 3>) make one version per command, never an empty one', async (t) => {
  const head = (n: number) =>
    eventually(
      () => remoteNode(client, 'redir.txt'),
      (x) => (x?.head_version ?? 0) >= n,
    );
  await shc('echo one > redir.txt', m);
  t.equal((await head(1))?.head_version, 1);
  await shc('echo two > redir.txt', m);
  t.equal((await head(2))?.head_version, 2);
  await shc('echo three >> redir.txt', m);
  t.equal((await head(3))?.head_version, 3);
  await shc('exec 3> fd3.txt; echo a >&3; sleep 0.2; echo b >&3; exec 3>&-', m);
  t.equal(await fs.readFile(path.join(m, 'fd3.txt'), 'utf8'), 'a\nb\n');
  t.equal(await shc('cat redir.txt', m), 'two\nthree\n');
  serverChecks.push(async (t) => {
    const node = await remoteNode(client, 'redir.txt');
    const { versions } = await client.versions(node!.id);
    t.same(versions.map((v) => v.size).sort((a, b) => a - b), [4, 4, 10], 'server: redir.txt has exactly the three versions written');
    const fd3 = await remoteNode(client, 'fd3.txt');
    const v3 = (await client.versions(fd3!.id)).versions;
    t.same(v3.map((v) => v.size), [4], 'server: one version for one open of fd 3');
  });
});

interface Row {
  id: number;
  name: string;
  qty: number;
}
const expectedRows: Row[] = [];
t.test('a SQLite database created, written in several transactions, closed, reopened and queried', async (t) => {
  const file = path.join(m, 'db', 'shop.sqlite');
  await fs.mkdir(path.dirname(file));
  let db = await openDb(file);
  await dbExec(db, 'CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER NOT NULL)');
  for (let tx = 0; tx < 5; tx++) {
    const values: string[] = [];
    for (let i = 0; i < 40; i++) {
      const id = tx * 40 + i + 1;
      expectedRows.push({ id, name: `item-${id}-${'x'.repeat(id % 50)}`, qty: id * 7 });
      values.push(`(${id}, 'item-${id}-${'x'.repeat(id % 50)}', ${id * 7})`);
    }
    await dbExec(db, `BEGIN; INSERT INTO items VALUES ${values.join(',')}; COMMIT;`);
  }
  await dbExec(db, 'BEGIN; UPDATE items SET qty = qty + 1 WHERE id % 10 = 0; DELETE FROM items WHERE id % 25 = 0; COMMIT;');
  for (const r of expectedRows) if (r.id % 10 === 0) r.qty += 1;
  for (let i = expectedRows.length - 1; i >= 0; i--) if (expectedRows[i]!.id % 25 === 0) expectedRows.splice(i, 1);
  await dbClose(db);
  // libfuse hides (renames to .fuse_hiddenNNN) a file unlinked while its release is still on the
  // way, and removes it after the release: the journal may show so for a moment.
  const names = await eventually(
    () => fs.readdir(path.dirname(file)),
    (n) => n.length === 1,
    5_000,
  );
  t.same(names, ['shop.sqlite'], 'the journal is gone after the last commit');

  db = await openDb(file);
  t.same(await dbAll<Row>(db, 'SELECT id, name, qty FROM items ORDER BY id'), expectedRows, 'rows after reopening');
  t.same(await dbAll(db, 'PRAGMA integrity_check'), [{ integrity_check: 'ok' }]);
  await dbClose(db);
});

t.test('overwrite, in-place rewrite, append and truncate of a committed multi-block file', async (t) => {
  const ref = path.join(local, 'edit.ref');
  await fs.writeFile(ref, big);
  await shc(`cp ${ref} edit.bin`, m);
  const v1 = await eventually(
    () => remoteNode(client, 'edit.bin'),
    (n) => n?.head_version === 1,
  );
  t.equal(v1?.head_version, 1, 'committed before it is edited again');
  const both = (cmd: (f: string) => string) => shc(`${cmd(ref)} && ${cmd('edit.bin')}`, m);
  await both((f) => `printf PATCHED | dd of=${f} bs=1 seek=1500000 conv=notrunc status=none`);
  t.equal((await shx(`cmp ${ref} edit.bin`, m)).code, 0, 'dd conv=notrunc rewrote 7 bytes in the middle');
  await both((f) => `echo tail >> ${f}`);
  t.equal((await shx(`cmp ${ref} edit.bin`, m)).code, 0, 'append');
  await both((f) => `truncate -s 1000000 ${f}`);
  t.equal((await fs.stat(path.join(m, 'edit.bin'))).size, 1_000_000, 'truncate shrinks');
  await both((f) => `truncate -s 2000000 ${f}`);
  t.equal((await shx(`cmp ${ref} edit.bin`, m)).code, 0, 'truncate grows with zeros');
  await shc(`cp ${local}/hello.txt small.txt && cp ${srcTree}/a/two.txt small.txt`, m);
  t.equal(await fs.readFile(path.join(m, 'small.txt'), 'utf8'), 'two needle two\n', 'cp over an existing file replaces its content');
  serverChecks.push(async (t) => {
    t.same(await remoteBytes('edit.bin'), await fs.readFile(ref), 'server: the head of edit.bin is the edited bytes');
    t.equal((await remoteNode(client, 'edit.bin'))?.id, v1?.id, 'server: still the same node');
    t.equal((await remoteBytes('small.txt'))?.toString(), 'two needle two\n', 'server: cp over an existing file');
  });
});

// errno of failing calls through the mount: the conformance suite (test/conformance/mount.test.ts).

let before = '';
t.test('after stopping the mount (queue drained) the server holds every change', async (t) => {
  before = await snapshot(m);
  t.equal(await drive.stop(), 0, 'the mount exits 0 after draining');
  for (const check of serverChecks) await check(t);
});

t.test('a fresh second mount with another cache shows the same tree, bytes, sizes, modes and mtimes', async (t) => {
  const second = await mountDrive(t, server, token);
  const m2 = second.mountpoint;
  const after = await snapshot(m2);
  t.equal(after, before, 'find + sha256sum of the whole tree equal to the first mount');
  for (const copy of ['untar', 'synced', 'copied-a']) {
    t.equal(await times(path.join(m2, copy)), await times(srcTree), `${copy}: the mtime of every file and folder as tar x, rsync -a and cp -a set them`);
  }
  t.equal((await shx(`diff -r ${srcTree} ${m2}/synced && diff -r ${srcTree} ${m2}/untar && diff -r ${srcTree} ${m2}/tree`, local)).code, 0, 'trees equal the local source');
  t.equal((await shx(`cmp ${local}/big.bin ${m2}/big.bin`, local)).code, 0, 'big.bin byte-identical');
  t.equal(await fs.readFile(path.join(m2, 'f.txt'), 'utf8'), 'second draft\n');
  t.equal((await shx(`cmp ${local}/edit.ref ${m2}/edit.bin`, local)).code, 0, 'edit.bin byte-identical to the edited reference');

  // Edits on the fresh mount: its cache is empty, so these start from blocks fetched from the server.
  await shc(`echo more >> hello.txt && sed -i s/needle/pin/ tree/a/two.txt && printf XY | dd of=big.bin bs=1 seek=2000000 conv=notrunc status=none`, m2);
  const bigEdited = Buffer.from(big);
  bigEdited.write('XY', 2_000_000);
  t.same(await fs.readFile(path.join(m2, 'big.bin')), bigEdited, 'in-place rewrite of a file never read on this mount');

  const repo = path.join(m2, 'repo');
  t.equal((await shc('git log --format=%s', repo)).trim(), 'second\nfirst', 'git log from the fresh mount');
  t.equal(await shc('git status --porcelain', repo), '', 'git status clean from the fresh mount');
  t.equal((await shx('git fsck --full --strict', repo)).code, 0, 'git fsck from the fresh mount');

  const db = await openDb(path.join(m2, 'db', 'shop.sqlite'));
  t.same(await dbAll<Row>(db, 'SELECT id, name, qty FROM items ORDER BY id'), expectedRows, 'SQLite rows from the fresh mount');
  await dbClose(db);
  const twoId = (await remoteNode(client, 'tree/a/two.txt'))?.id;
  t.equal(await second.stop(), 0, 'the second mount exits 0 after draining');
  t.equal((await remoteBytes('hello.txt'))?.toString(), 'hello, stratus\nmore\n', 'server: append from the second mount');
  t.equal((await remoteBytes('tree/a/two.txt'))?.toString(), 'two pin two\n', 'server: sed -i from the second mount');
  t.equal((await remoteNode(client, 'tree/a/two.txt'))?.id, twoId, 'server: sed -i (temp + rename over) kept the node');
  t.same(await remoteBytes('big.bin'), bigEdited, 'server: in-place rewrite from the second mount');
});
