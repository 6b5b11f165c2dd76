import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { refused, stratusCli } from '../helpers/cli-run.js';
import { eventually, forceUnmount, remoteNode, root, startServerProcess, tempDir } from '../helpers/drive.js';

/**
 * `mount.fuse.stratus` run as mount(8) runs it for `mount -t fuse.stratus SERVER DIR -o …` and
 * an fstab line: it must return only once the drive is mounted (exit 0), leave the drive running
 * in the background, and fail with the drive's own one line when it cannot mount. On a real
 * server and a temp mountpoint; every mount is undone at teardown.
 */

const exec = promisify(execFile);
const helperBin = path.join(root, 'dist', 'cli', 'mount-helper.js');

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

async function helper(args: string[], env: Record<string, string>): Promise<Ran> {
  return exec(process.execPath, [helperBin, ...args], { env: { ...process.env, ...env }, timeout: 150_000 }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (e: Ran) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

/** The file system type mounted at `dir`, if any (/proc/self/mountinfo: after " - " comes the type). */
async function mountedType(dir: string): Promise<string | undefined> {
  const lines = (await fs.readFile('/proc/self/mountinfo', 'utf8')).split('\n');
  const line = lines.find((l) => l.split(' ')[4] === dir);
  return line?.split(' - ')[1]?.split(' ')[0];
}

t.test('mount.fuse.stratus SERVER DIR -o … returns once the drive is mounted; stratus unmount stops it', async (t) => {
  const server = await startServerProcess(t);
  const { token, client } = await server.addUser('helen');
  const home = await tempDir(t, 'helper-home');
  const env = { XDG_CONFIG_HOME: path.join(home, 'config'), XDG_STATE_HOME: path.join(home, 'state') };
  const tokenFile = path.join(home, 'token');
  await fs.writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
  const mnt = await tempDir(t, 'helper-mnt');
  const cache = await tempDir(t, 'helper-cache');
  let pid: number | undefined;
  t.teardown(async () => {
    if (pid) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    await forceUnmount(mnt);
  });

  const fake = await helper([server.url, mnt, '-f', '-o', `token_file=${tokenFile}`], env);
  t.equal(fake.code, 0, '-f (fake): exits 0');
  t.match(fake.stderr, /would run: stratus mount \S+ --server http:\/\/\S+ --token-file \S+token/, '-f says what it would run');
  t.equal(await mountedType(mnt), undefined, '-f mounts nothing');

  const options = `rw,noauto,user,_netdev,nofail,x-systemd.automount,token_file=${tokenFile},cache=${cache},cache_size=1GB,drain_timeout=30`;
  const ran = await helper([server.url, mnt, '-v', '-o', options], env);
  t.equal(ran.code, 0, `exits 0 once mounted: ${ran.stderr}`);
  pid = Number(/\(pid (\d+);/.exec(ran.stderr)?.[1]) || undefined;
  t.ok(pid, `-v names the drive's pid: ${ran.stderr}`);
  t.equal(await mountedType(mnt), 'fuse.stratus', 'the drive is mounted when the helper returns (no waiting)');

  await fs.writeFile(path.join(mnt, 'via-helper.txt'), 'mounted by mount.fuse.stratus\n');
  await eventually('the file reached the server', () => remoteNode(client, 'via-helper.txt'), (n) => n !== undefined && n.head_version > 0);

  const stopped = await stratusCli(['unmount', mnt], { env });
  t.equal(stopped.code, 0, `stratus unmount stops the background drive: ${stopped.stderr}`);
  t.equal(await mountedType(mnt), undefined, 'and the mountpoint is clean');
  const log = await fs.readFile(path.join(env.XDG_STATE_HOME, 'stratus', `mount-${mnt.slice(1).replace(/[^A-Za-z0-9._-]/g, '_')}.log`), 'utf8');
  t.match(log, /drive ready at /, "the drive's output went to its log file under XDG_STATE_HOME");
});

t.test('a drive that cannot mount: the helper exits 1 with the drive\'s one line, and leaves no mount', async (t) => {
  const server = await startServerProcess(t);
  const { token } = await server.addUser('ivan');
  const home = await tempDir(t, 'helper-home');
  const env = { XDG_CONFIG_HOME: path.join(home, 'config'), XDG_STATE_HOME: path.join(home, 'state') };
  const mnt = await tempDir(t, 'helper-mnt');
  t.teardown(() => forceUnmount(mnt));
  refused(t, await helper([server.url, mnt, '-o', `token=${token},cache_size=lots`], env), /^stratus: --cache-size: not a size: lots/, 'a bad option value');
  refused(t, await helper([server.url, path.join(mnt, 'missing'), '-o', `token=${token}`], env), /^stratus: mountpoint \S+missing does not exist\n$/, 'a missing mountpoint');
  const ro = await helper([server.url, mnt, '-o', 'ro'], env);
  t.equal(ro.code, 1, 'ro: exits 1');
  t.match(ro.stderr, /^mount\.fuse\.stratus: read-only mounts \(ro\) are not supported/, 'ro: says why');
  t.equal(await mountedType(mnt), undefined, 'nothing was mounted');
});
