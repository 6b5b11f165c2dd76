import fs from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { eventually, mountDrive, remoteNode, sh, snapshot, startServerProcess, tempDir, treeLink, treeOf } from '../helpers/drive.js';

/*
 * Symbolic links on real FUSE mounts (`stratus mount` processes) of a real `stratus serve`
 * process: ln -s and readlink, the kernel following links the drive stores, cp -a and tar of a
 * node_modules-like tree with relative, absolute, folder, dangling and looping links (into the
 * drive and back out, links' own mtimes included), a git checkout of a repository holding links,
 * and a second drive of the same user (another device) that sees all of it live. At the end the
 * drives are stopped (their queues drain) and the server holds the links with their targets.
 *
 * This process only uses async fs calls and async child processes against the mounts.
 */

const ENV = { LC_ALL: 'C', TZ: 'UTC' };
const shc = (cmd: string, cwd: string) => sh(cmd, cwd, ENV);

const server = await startServerProcess(t);
const user = await server.addUser('linda');
const desk = await server.addDevice('linda', 'desk');
const a = await mountDrive(t, server, user.token, { device: 'laptop' });
const b = await mountDrive(t, server, desk.token, { device: 'desk' });
const local = await tempDir(t, 'links-local');

/** Waits until drive B shows `rel` exactly as drive A does (the change feed carried it over). */
async function sameOnB(rel: string): Promise<string> {
  const want = await snapshot(a.p(rel));
  return eventually(`drive B to show ${rel} as drive A does`, () => snapshot(b.p(rel)), (seen) => seen === want);
}

// A node_modules-like tree with every kind of link, on local disk; links get their own old mtimes.
const proj = path.join(local, 'proj');
await fs.mkdir(path.join(proj, 'node_modules', 'pkg', 'bin'), { recursive: true });
await fs.mkdir(path.join(proj, 'node_modules', '.bin'));
await fs.writeFile(path.join(local, 'outside.txt'), 'outside the tree\n');
await fs.writeFile(path.join(proj, 'README.md'), '# proj\n');
await fs.writeFile(path.join(proj, 'node_modules', 'pkg', 'package.json'), '{"name":"pkg","bin":"bin/cli.js"}\n');
await fs.writeFile(path.join(proj, 'node_modules', 'pkg', 'bin', 'cli.js'), '#!/bin/sh\necho pkg cli\n', { mode: 0o755 });
const links: Record<string, string> = {
  'node_modules/.bin/cli': '../pkg/bin/cli.js',
  'node_modules/.bin/pkgdir': '../pkg',
  'abs-outside': path.join(local, 'outside.txt'),
  dangling: 'no/such/file',
  self: 'self',
  'spaced name': 'target with spaces/é',
};
let stamp = 1_100_000_000;
for (const [rel, target] of Object.entries(links)) {
  await fs.symlink(target, path.join(proj, rel));
  await shc(`touch -h -d @${(stamp += 86_400 * 100 + 7)} '${rel}'`, proj);
}
for (const dir of ['node_modules/.bin', 'node_modules/pkg/bin', 'node_modules/pkg', 'node_modules', '.']) await shc(`touch -d @${(stamp += 3600)} '${dir}'`, proj);
const projSnapshot = await snapshot(proj);

t.test('ln -s makes a link readlink reads back as written; the kernel follows it to files and folders of the drive; ln -sf replaces it; rm removes only the link; targets that are not UTF-8 and hard links are refused', async (t) => {
  const m = a.mountpoint;
  await shc('mkdir -p lib/real && echo data > lib/real/file.txt', m);
  await shc('ln -s lib/real/file.txt to-file && ln -s lib/real to-dir && ln -s ../../outside/of/drive away', m);
  t.equal(await shc('readlink to-file', m), 'lib/real/file.txt\n', 'readlink reads the target as written');
  t.equal(await shc('readlink away', m), '../../outside/of/drive\n');
  t.equal(await shc('stat -c "%F %s %a" to-file', m), 'symbolic link 17 777\n', 'lstat: a link, size = target bytes, 0777');
  t.equal(await shc('cat to-file && cat to-dir/file.txt', m), 'data\ndata\n', 'the kernel follows links to a file and to a folder');
  t.equal(await shc('stat -L -c "%F %s" to-file', m), 'regular file 5\n', 'stat -L sees the file behind it');
  t.equal(await shc('ls -l to-dir | cut -c1', m), 'l\n', 'ls -l shows a link');
  await shc('ln -sfn lib/real/other to-file', m);
  t.equal(await shc('readlink to-file', m), 'lib/real/other\n', 'ln -sf replaced the link');
  await shc('rm to-dir to-file', m);
  t.equal(await shc('ls lib/real', m), 'file.txt\n', 'rm of links leaves what they pointed at');
  t.equal(await shc('ls', m), 'away\nlib\n');
  await t.rejects(fs.link(a.p('lib', 'real', 'file.txt'), a.p('hard')), { code: 'EPERM' }, 'a hard link is refused with EPERM');
  await t.rejects(fs.symlink(Buffer.from([0x61, 0xff, 0x62]), a.p('not-utf8')), { code: 'EILSEQ' }, 'a target that is not UTF-8 is refused, not stored changed');
  await t.rejects(fs.lstat(a.p('not-utf8')), { code: 'ENOENT' });
  await sameOnB('lib');
  t.equal(await fs.readlink(b.p('away')).catch(() => undefined), '../../outside/of/drive', 'drive B reads the link too');
});

t.test('cp -a of a node_modules tree with relative, absolute, folder, dangling and looping links into the drive and back out keeps every link, target and mtime', async (t) => {
  await shc(`cp -a ${proj} ${a.p('copied')}`, local);
  t.equal(await snapshot(a.p('copied')), projSnapshot, 'the drive shows the tree exactly: types, sizes, modes, mtimes (links\' own), targets, file hashes');
  t.equal(await shc('node_modules/.bin/cli', a.p('copied')), 'pkg cli\n', 'running a .bin link runs the file behind it');
  t.equal(await fs.readFile(a.p('copied', 'node_modules', '.bin', 'pkgdir', 'package.json'), 'utf8'), '{"name":"pkg","bin":"bin/cli.js"}\n', 'through a link to a folder');
  t.equal(await fs.readFile(a.p('copied', 'abs-outside'), 'utf8'), 'outside the tree\n', 'an absolute link leaves the drive');
  await t.rejects(fs.stat(a.p('copied', 'dangling')), { code: 'ENOENT' }, 'a dangling link stays dangling');
  await t.rejects(fs.stat(a.p('copied', 'self')), { code: 'ELOOP' }, 'a loop is a loop');
  const back = path.join(local, 'back');
  await shc(`cp -a ${a.p('copied')} ${back}`, local);
  t.equal(await snapshot(back), projSnapshot, 'copied back out, the tree is the one we started from');
  t.equal(await sameOnB('copied'), projSnapshot, 'drive B shows the same tree');
});

t.test('tar x into the drive and tar c out of it round-trip links (GNU tar makes absolute and ../ links last, through placeholder files)', async (t) => {
  await shc(`tar cf ${local}/proj.tar -C ${local} proj`, local);
  await shc(`mkdir untar && tar xf ${local}/proj.tar -C untar`, a.mountpoint);
  t.equal(await snapshot(a.p('untar', 'proj')), projSnapshot, 'tar x into the drive');
  await shc(`tar cf ${local}/drive.tar -C ${a.p('untar')} proj && mkdir ${local}/untarred && tar xf ${local}/drive.tar -C ${local}/untarred`, local);
  t.equal(await snapshot(path.join(local, 'untarred', 'proj')), projSnapshot, 'tar c of the drive, extracted on local disk');
  t.equal(await shc(`tar tvf ${local}/drive.tar | grep -c '^l'`, local), `${Object.keys(links).length}\n`, 'the archive holds the links as links');
  await sameOnB('untar');
});

t.test('git clone of a repository holding links checks them out as links; checkouts that change them keep git status clean', async (t) => {
  const git = (cmd: string, cwd: string) =>
    shc(`GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.com GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.com git ${cmd}`, cwd);
  const origin = path.join(local, 'origin');
  await fs.mkdir(path.join(origin, 'docs'), { recursive: true });
  await fs.writeFile(path.join(origin, 'README.md'), 'readme\n');
  await fs.writeFile(path.join(origin, 'docs', 'guide.md'), 'guide\n');
  await fs.symlink('README.md', path.join(origin, 'LINK.md'));
  await fs.symlink('docs', path.join(origin, 'manual'));
  await git('init -q -b main . && git add -A && git commit -q -m one', origin);
  await shc('ln -sfn docs/guide.md LINK.md && rm manual && ln -s ../elsewhere dangling', origin);
  await git('add -A && git commit -q -m two', origin);

  await git(`clone -q ${origin} ${a.p('clone')}`, local);
  const clone = a.p('clone');
  t.equal(await shc('git config --get core.symlinks || true', clone), '', 'git found that the drive has symlinks');
  t.equal(await fs.readlink(path.join(clone, 'LINK.md')), 'docs/guide.md', 'a link checked out as a link');
  t.equal(await fs.readlink(path.join(clone, 'dangling')), '../elsewhere', 'a dangling one too');
  t.equal(await fs.readFile(path.join(clone, 'LINK.md'), 'utf8'), 'guide\n');
  t.equal(await shc('git status --porcelain', clone), '', 'git status is clean');
  await git('checkout -q HEAD~1', clone);
  t.equal(await fs.readlink(path.join(clone, 'LINK.md')), 'README.md', 'checkout of the first commit: the link changed target');
  t.equal(await fs.readlink(path.join(clone, 'manual')), 'docs', 'a link to a folder came back');
  await t.rejects(fs.lstat(path.join(clone, 'dangling')), { code: 'ENOENT' }, 'a link that commit lacks is gone');
  t.equal(await shc('git status --porcelain', clone), '', 'git status is clean');
  await git('checkout -q main', clone);
  t.equal(await fs.readlink(path.join(clone, 'LINK.md')), 'docs/guide.md');
  t.equal(await shc('git status --porcelain && git diff --stat', clone), '', 'clean again');
  const tree = await eventually(
    'drive B to show the clone\'s links',
    () => treeOf(b.p('clone')),
    (tr) => tr['LINK.md'] === treeLink('docs/guide.md') && tr.dangling === treeLink('../elsewhere') && !('manual' in tr),
  );
  t.equal(tree['README.md'], 'readme\n', 'drive B: the clone, files and links');
  // The links arrive first; the rest of the checkout (.git's index, HEAD) may still be on its way.
  const status = await eventually('git status on drive B to be clean', () => shc('git status --porcelain', b.p('clone')), (out) => out === '').catch((err: Error) => err.message);
  t.equal(status, '', 'git on drive B finds the same clean checkout');
});

t.test('a link renamed and deleted on one drive is renamed and gone on the other', async (t) => {
  await fs.symlink('first/target', a.p('moving'));
  await eventually('drive B to read the new link', () => fs.readlink(b.p('moving')), (v) => v === 'first/target');
  await fs.rename(a.p('moving'), a.p('lib', 'moved'));
  await eventually('drive B to read it under its new name', () => fs.readlink(b.p('lib', 'moved')), (v) => v === 'first/target');
  await t.rejects(fs.lstat(b.p('moving')), { code: 'ENOENT' }, 'drive B: the old name is gone');
  await fs.unlink(a.p('lib', 'moved'));
  await eventually('drive B to lose the link', () => fs.lstat(b.p('lib', 'moved')).then(() => 'there', (err: NodeJS.ErrnoException) => err.code), (v) => v === 'ENOENT');
  t.pass('gone on drive B');
});

t.test('after both drives stop (their queues drained), the server holds the links with their targets and mtimes', async (t) => {
  t.equal(await a.stop(), 0, 'drive A exits 0');
  t.equal(await b.stop(), 0, 'drive B exits 0');
  for (const [rel, target] of Object.entries(links)) {
    t.match(await remoteNode(user.client, `copied/${rel}`), { kind: 'link', target, size: Buffer.byteLength(target), mode: 0o777 }, `server: copied/${rel}`);
  }
  const cli = await remoteNode(user.client, 'untar/proj/node_modules/.bin/cli');
  const local = await fs.lstat(path.join(proj, 'node_modules', '.bin', 'cli'));
  t.equal(cli?.mtime !== undefined && Math.floor(cli.mtime / 1000), Math.floor(local.mtimeMs / 1000), 'server: a link\'s own mtime');
  t.match(await remoteNode(user.client, 'clone/LINK.md'), { kind: 'link', target: 'docs/guide.md' });
});
