import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { canonical, eventually, mountDrive, remoteNode, remoteTree, sh, startServerProcess, tempDir, treeOf } from '../helpers/drive.js';

/*
 * The drive's virtual tree `.stratus/` (DESIGN §6) on a real FUSE mount of a real `stratus serve`:
 * `.stratus/versions/PATH/` lists every version of a file, each read with its own bytes;
 * `.stratus/at/TIME/` is the tree as it was at each recorded time (paths, types, sizes, sha256);
 * `ls -a`, `find` and `rsync -a` of the drive never enter `.stratus`; every change there fails with
 * "Read-only file system" and changes nothing.
 *
 * Times: a time is recorded once the server holds exactly what the drive shows (the drive sent it
 * all), and the next change starts only after the clock has passed it (the journal keeps the
 * server's milliseconds; the server runs on this machine's clock).
 *
 * This process only uses async fs calls and async child processes against the mount.
 */

const ENV = { LC_ALL: 'C', TZ: 'UTC' };
const shc = (cmd: string, cwd: string) => sh(cmd, cwd, ENV);

const server = await startServerProcess(t);
await server.addUser('hana');
const laptop = await server.addDevice('hana', 'laptop');
const api = laptop.client;
const drive = await mountDrive(t, server, laptop.token, { device: 'laptop' });
const m = drive.mountpoint;
const outside = await tempDir(t, 'history-out');

/** Waits until the server holds exactly the tree the drive shows (everything was sent). */
async function sent(): Promise<void> {
  const shown = canonical(await treeOf(m));
  await eventually('the server to hold what the drive shows', async () => canonical(await remoteTree(api)), (seen) => seen === shown);
}

/** The present time, once the clock has moved past it. */
async function recordTime(): Promise<number> {
  const at = Date.now();
  while (Date.now() <= at) await new Promise((resolve) => setImmediate(resolve));
  return at;
}

/** Paths, types, sizes (not of folders) and link targets under `dir`, then a sha256 of each file: what "the same tree" means here. */
async function shape(dir: string): Promise<string> {
  const list = await shc(`find . -mindepth 1 -printf '%y %s %p -> %l\\n' | sed -E 's/^d [0-9]+/d -/' | sort -k3`, dir);
  const sums = await shc(`find . -type f -print0 | sort -z | xargs -0 -r sha256sum`, dir);
  return list + sums;
}

t.test('five saves of a file: .stratus/versions/f/ lists five, each reads the bytes of its version', async (t) => {
  const saves = [1, 2, 3, 4, 5].map((i) => Buffer.concat([Buffer.from(`save ${i}\n`), crypto.randomBytes(i * 300_000)]));
  for (const [i, bytes] of saves.entries()) {
    await fs.writeFile(drive.p('f'), bytes);
    await eventually(`f at version ${i + 1} on the server`, () => remoteNode(api, 'f'), (n) => n?.head_version === i + 1);
  }
  const node = (await remoteNode(api, 'f'))!;
  const { versions } = await api.versions(node.id);
  const names = (await shc('ls .stratus/versions/f', m)).trim().split('\n');
  t.equal(names.length, 5, `five versions listed: ${names.join(' | ')}`);
  for (const v of versions) {
    const stamp = `${v.committed_at.slice(0, 10)} ${v.committed_at.slice(11, 19).replaceAll(':', '')}`;
    const name = `f v${v.version} ${stamp} laptop`;
    t.ok(names.includes(name), `version ${v.version} is "${name}"`);
    const bytes = await fs.readFile(path.join(m, '.stratus', 'versions', 'f', name));
    t.ok(bytes.equals(saves[v.version - 1]!), `"${name}" reads the bytes of version ${v.version}`);
  }
  t.equal(await shc(`stat -c '%A %s' '.stratus/versions/f/f v2 '*`, m), `-r--r--r-- ${saves[1]!.length}\n`, 'read-only, with its size');
  t.equal(await shc(`cmp <(tail -c 1000 '.stratus/versions/f/'*' v3 '*) <(tail -c 1000 f) > /dev/null && echo same || echo differ`, m), 'differ\n');
  t.ok((await fs.readFile(drive.p('f'))).equals(saves[4]!), 'the file itself is the last save');
});

t.test('.stratus/at/T/ for each recorded time T is the tree as it was at T: paths, types, sizes, sha256', async (t) => {
  await fs.mkdir(drive.p('tree'));
  const top = drive.p('tree');
  const recorded: Array<{ at: number; shape: string; what: string }> = [];
  const record = async (what: string) => {
    await sent();
    recorded.push({ shape: await shape(top), at: await recordTime(), what });
  };
  await record('empty');

  await shc('mkdir -p src/lib docs && head -c 700000 /dev/urandom > src/main.bin && echo util > src/lib/util.c && echo hello > docs/readme.md && ln -s src/main.bin main', top);
  await record('made');

  await shc('head -c 123456 /dev/urandom > src/main.bin && mv docs/readme.md README.md && echo more >> src/lib/util.c', top);
  await record('edited, moved, appended');

  await shc('rm -r src/lib && mkdir -p new/deeper && cp README.md new/deeper/copy.md && rmdir docs', top);
  await record('removed a folder, made others');

  await shc('mv new renamed && ln -sfn README.md main && echo x > src/main.bin', top);
  await record('renamed a folder, replaced a link, rewrote a file');

  for (const { at, shape: then, what } of recorded) {
    const iso = new Date(at).toISOString();
    t.equal(await shape(path.join(m, '.stratus', 'at', iso, 'tree')), then, `.stratus/at/${iso}/tree (${what})`);
  }
  const made = recorded[1]!;
  t.equal(await shape(path.join(m, '.stratus', 'at', String(made.at), 'tree')), made.shape, 'the same time in ms since the epoch');
  t.equal(await shc(`stat -c '%A' .stratus/at/${made.at}/tree/src .stratus/at/${made.at}/tree/src/main.bin`, m), 'dr-xr-xr-x\n-r--r--r--\n', 'read-only modes');
  t.equal(await shc(`readlink .stratus/at/${made.at}/tree/main`, m), 'src/main.bin\n', 'links as they were');
});

t.test('ls -a, find and rsync -a of the drive never enter .stratus, which resolves by its path', async (t) => {
  await sent();
  t.notMatch(await shc('ls -a', m), /\.stratus/, 'ls -a of the root does not show it');
  t.equal(await shc('stat -c %F .stratus && ls .stratus', m), 'directory\nat\nversions\n', 'but it resolves');
  const found = await shc('find .', m);
  t.notMatch(found, /\.stratus/, 'find lists nothing of it');
  t.match(found, /\.\/tree\/README\.md/, 'find walks the drive');
  await shc(`rsync -a '${m}/' '${outside}/copy/'`, outside);
  t.same(await treeOf(path.join(outside, 'copy')), await treeOf(m), 'rsync -a copied the drive');
  await t.rejects(fs.stat(path.join(outside, 'copy', '.stratus')), { code: 'ENOENT' }, 'and nothing of .stratus');
});

t.test('every change in .stratus fails with "Read-only file system" and changes nothing', async (t) => {
  await sent();
  const before = canonical(await remoteTree(api));
  const version = (await shc('ls .stratus/versions/f | head -1', m)).trim();
  const v = `.stratus/versions/f/${version}`;
  const at = `.stratus/at/${await recordTime()}`;
  const commands = [
    `touch ${at}/new`,
    `echo x > '${v}'`,
    `echo x >> ${at}/f`,
    `mkdir ${at}/d`,
    `mkdir .stratus/x`,
    `rm '${v}'`,
    `rm -r ${at}/tree`,
    `rmdir ${at}/tree/src`,
    `mv '${v}' restored`,
    `mv f '.stratus/versions/f/moved'`,
    `mv ${at}/tree ${at}/tree2`,
    `chmod 644 '${v}'`,
    `touch '${v}'`,
    `touch -d @1000000000 ${at}/tree`,
    `truncate -s 0 '${v}'`,
    `ln -s x ${at}/link`,
  ];
  // setxattr(2) from a shell needs a tool: Python's os.setxattr where Python is installed.
  const python = await shc('command -v python3 || true', m);
  if (python.trim()) commands.push(`python3 -c 'import os, sys; os.setxattr(sys.argv[1], "user.x", b"1")' '${v}'`);
  else t.comment('no python3: setxattr is checked by test/mount/history.test.ts only');
  for (const cmd of commands) {
    const err = await shc(cmd, m).then(
      () => 'succeeded',
      (e: { stderr?: string }) => e.stderr ?? String(e),
    );
    t.match(err, /Read-only file system/, cmd);
  }
  await sent();
  t.equal(canonical(await remoteTree(api)), before, 'the server holds what it held');
  t.notOk(await fs.stat(drive.p('restored')).catch(() => undefined), 'nothing moved out of it');
  t.ok((await fs.stat(drive.p('f'))).isFile(), 'nothing moved into it');
  t.equal((await shc(`ls .stratus/versions/f | wc -l`, m)).trim(), '5', 'the versions are as they were');
});
