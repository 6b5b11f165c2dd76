import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { socketPath } from '../../mount/control/runtime-dir.js';
import type { MountStatus } from '../../mount/status.js';
import { bin, eventually, forceUnmount, mountDrive, remoteBytes, remoteNode, run, spawnUntil, startServerProcess } from '../helpers/drive.js';
import {
  createSystemUser,
  grantDevFuse,
  grantUserAllowOther,
  runAs,
  shAs,
  stratusAs,
  systemUsersUnavailable,
  userAllowOther,
  userDir,
  type SystemUser,
} from '../helpers/system-user.js';

/*
 * The drive run by normal users, as people run it (DESIGN §11): users made by the test
 * (useradd, removed after), the mount through fusermount. One user's drive is that user's: its
 * control socket, status, cache folder and state are out of another user's reach, and another
 * user's `stratus unmount` cannot stop it — nor can a pid file planted in /tmp make root's
 * `stratus unmount` signal anything (the hole of the old shared /tmp registry). With
 * --allow-other (and user_allow_other in /etc/fuse.conf), another user lists and reads the drive.
 *
 * Machine changes, each as root and restored at teardown: /dev/fuse is made 0666 as stock Debian
 * ships it (these machines ship it 0600 root, where no normal user can mount: rclone fails the
 * same way), and for --allow-other a line user_allow_other in /etc/fuse.conf.
 */

const skip = systemUsersUnavailable();

/** The runtime folder of a user's control sockets (no XDG_RUNTIME_DIR in a test user's environment). */
const runtimeOf = (u: SystemUser) => path.join(u.home, '.cache', 'stratus', 'run');
/** The control socket of `u`'s drive at `mountpoint`, as that user's CLI names it. */
const socketOf = (u: SystemUser, mountpoint: string) => path.join(runtimeOf(u), path.basename(socketPath(mountpoint)));

/** Connects to a unix socket as `u`; resolves with the error code ('connected' if it could). */
async function connectAs(u: SystemUser, socket: string): Promise<string> {
  const script = `require('net').connect(${JSON.stringify(socket)}).on('connect', function () { console.log('connected'); this.destroy(); }).on('error', (e) => console.log(e.code))`;
  return (await runAs(u, process.execPath, ['-e', script])).stdout.trim();
}

t.test('a normal user mounts, writes, sees the status and unmounts; another user can neither see nor stop that drive', { skip }, async (t) => {
  const alice = await createSystemUser(t);
  const bob = await createSystemUser(t);
  await grantDevFuse(t);
  const server = await startServerProcess(t);
  const account = await server.addUser('alice');
  const shared = await userDir(t, alice, 'alice-mnt');
  const mountpoint = path.join(shared, 'Stratus');
  await shAs(alice, `mkdir ${mountpoint}`);
  const cacheDir = path.join(alice.home, '.cache', 'stratus', 'drive');
  const drive = await mountDrive(t, server, account.token, { mountpoint, cacheDir, as: alice });

  // Mount and write as alice.
  const wrote = await shAs(alice, `printf 'from a normal user\\n' > ${mountpoint}/hello.txt && cat ${mountpoint}/hello.txt`);
  t.equal(wrote.stdout, 'from a normal user\n', 'alice writes and reads her drive');
  await eventually('hello.txt committed', () => remoteNode(account.client, 'hello.txt'), (n) => n?.head_version === 1);
  t.equal((await remoteBytes(account.client, (await remoteNode(account.client, 'hello.txt'))!)).toString(), 'from a normal user\n', 'the server has it');

  // Her status, over her control socket.
  const st = await stratusAs(alice, ['status', mountpoint, '--json']);
  t.equal(st.code, 0, `alice's status: exit 0 ${st.stderr}`);
  t.match(JSON.parse(st.stdout) as MountStatus, { mountpoint, user: 'alice', pid: drive.child.pid, connected: true }, 'her drive, its process');
  t.equal((await stratusAs(alice, ['status'])).code, 0, 'listed without MOUNTPOINT');

  // What is hers is private: runtime folder and cache 0700, socket 0600.
  t.equal((await fs.stat(runtimeOf(alice))).mode & 0o777, 0o700, 'runtime folder 0700');
  const sock = await fs.lstat(socketOf(alice, mountpoint));
  t.ok(sock.isSocket() && sock.uid === alice.uid, 'her control socket, owned by her');
  t.equal(sock.mode & 0o777, 0o600, 'socket 0600');
  t.equal((await fs.stat(cacheDir)).mode & 0o777, 0o700, 'cache folder 0700');
  t.equal((await fs.stat(path.join(cacheDir, 'state', 'state.db'))).mode & 0o777, 0o600, 'state database 0600');
  t.equal((await fs.stat(path.join(cacheDir, 'staging'))).mode & 0o777, 0o700, 'staging folder 0700');

  // Bob: nothing of hers is his to read, list, connect to or stop.
  t.equal(await connectAs(bob, socketOf(alice, mountpoint)), 'EACCES', "bob cannot connect to alice's control socket");
  t.not((await shAs(bob, `ls ${runtimeOf(alice)}`)).code, 0, "bob cannot list alice's runtime folder");
  t.not((await shAs(bob, `ls ${cacheDir}`)).code, 0, "bob cannot list alice's cache folder");
  t.not((await shAs(bob, `cat ${cacheDir}/state/state.db`)).code, 0, "bob cannot read alice's state database");
  const bobStatus = await stratusAs(bob, ['status', mountpoint]);
  t.equal(bobStatus.code, 1, "bob's status of alice's mountpoint: exit 1");
  t.equal(bobStatus.stderr, `stratus: no stratus drive is mounted at ${mountpoint}\n`, 'no drive of his there');
  t.match((await stratusAs(bob, ['status'])).stderr, /no stratus drive is mounted/, "alice's drive is not in bob's list");
  t.not((await shAs(bob, `ls ${mountpoint}`)).code, 0, 'without --allow-other bob cannot list the drive itself');
  const bobUnmount = await stratusAs(bob, ['unmount', mountpoint]);
  t.not(bobUnmount.code, 0, `bob's stratus unmount of alice's drive fails: ${bobUnmount.stderr.trim()}`);
  t.equal(drive.child.exitCode, null, "alice's drive still runs");
  t.equal((await stratusAs(alice, ['status', mountpoint])).code, 0, 'and still answers her');

  // The old hole: a pid file planted in the shared /tmp/stratus-mounts named a process that root's
  // `stratus unmount` then signalled. Nothing is read from there any more.
  const victim = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1 << 30)'], { stdio: 'ignore' });
  t.teardown(() => victim.kill('SIGKILL'));
  const planted = path.join(shared, 'not-a-drive');
  await fs.mkdir(planted);
  await shAs(bob, `mkdir -p /tmp/stratus-mounts; echo ${victim.pid} > "/tmp/stratus-mounts/$(node -e 'console.log(encodeURIComponent(process.argv[1]))' ${planted}).pid"`);
  t.teardown(() => fs.rm('/tmp/stratus-mounts', { recursive: true, force: true }));
  const rootUnmount = await run(process.execPath, [bin, 'unmount', planted]).then(
    () => 0,
    (e: { code: number }) => e.code,
  );
  t.not(rootUnmount, 0, "root's stratus unmount of a path with a planted pid file fails (nothing mounted there)");
  t.equal(victim.exitCode ?? victim.signalCode, null, 'and the process the pid file named was not signalled');

  // Alice stops her drive over her socket: it drains, unmounts, exits 0.
  const un = await stratusAs(alice, ['unmount', mountpoint]);
  t.equal(un.code, 0, `alice's stratus unmount: exit 0 ${un.stderr}`);
  t.match(un.stderr, /unmounted /, 'says so');
  t.equal(await drive.stop(), 0, 'her drive process exited 0');
  t.same(await fs.readdir(mountpoint), [], 'the mountpoint is a plain empty folder again');
  await t.rejects(fs.lstat(socketOf(alice, mountpoint)), { code: 'ENOENT' }, 'her control socket is gone');
});

t.test('--allow-other: another user lists and reads the drive (user_allow_other in /etc/fuse.conf)', { skip }, async (t) => {
  const alice = await createSystemUser(t);
  const bob = await createSystemUser(t);
  await grantDevFuse(t);
  const server = await startServerProcess(t);
  const account = await server.addUser('alice');
  const shared = await userDir(t, alice, 'alice-shared');
  const mountpoint = path.join(shared, 'Stratus');
  await shAs(alice, `mkdir ${mountpoint}`);
  const cacheDir = path.join(alice.home, '.cache', 'stratus', 'drive');

  if (!(await userAllowOther())) {
    const refused = await stratusAs(alice, ['mount', mountpoint, '--server', server.url, '--token', account.token, '--cache', cacheDir, '--allow-other']);
    t.not(refused.code, 0, 'without user_allow_other, --allow-other is refused');
    t.match(refused.stderr, /^stratus: --allow-other needs a line user_allow_other in \/etc\/fuse\.conf/, 'in one line naming the fix');
  }
  await grantUserAllowOther(t);
  await mountDrive(t, server, account.token, { mountpoint, cacheDir, as: alice, args: ['--allow-other'] });
  await shAs(alice, `mkdir ${mountpoint}/docs && printf 'for everyone to read\\n' > ${mountpoint}/docs/readme.txt`);

  const listed = await shAs(bob, `ls ${mountpoint} ${mountpoint}/docs`);
  t.equal(listed.code, 0, `bob lists the drive ${listed.stderr}`);
  t.match(listed.stdout, /docs/, 'sees the folder');
  t.match(listed.stdout, /readme\.txt/, 'and the file in it');
  const read = await shAs(bob, `cat ${mountpoint}/docs/readme.txt`);
  t.equal(read.stdout, 'for everyone to read\n', 'bob reads the file');
  t.not((await shAs(bob, `printf x > ${mountpoint}/docs/readme.txt`)).code, 0, 'but cannot write a file whose mode does not let him (default_permissions)');
  t.not((await stratusAs(bob, ['status', mountpoint])).code, 0, 'nor ask the drive anything: the control socket stays alice’s');
});

t.test('stratus up as a normal user: embedded server, drive and stop, with private data', { skip }, async (t) => {
  const alice = await createSystemUser(t);
  await grantDevFuse(t);
  const mountpoint = path.join(alice.home, 'Stratus');
  const dataDir = path.join(alice.home, 'stratus-data');
  const up = await spawnUntil(['up', mountpoint, '--data', dataDir, '--listen', '127.0.0.1:0'], /drive ready at/, 60_000, alice);
  const exited = new Promise<number | null>((resolve) => up.child.once('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (up.child.exitCode === null && up.child.signalCode === null) up.child.kill('SIGTERM');
    await exited;
    await forceUnmount(mountpoint);
  });
  const wrote = await shAs(alice, `printf 'up as alice\\n' > ${mountpoint}/note.txt && cat ${mountpoint}/note.txt`);
  t.equal(wrote.stdout, 'up as alice\n', 'her drive works');
  t.equal((await fs.stat(dataDir)).mode & 0o777, 0o700, 'the embedded server’s data folder is 0700');
  t.equal((await fs.stat(path.join(dataDir, 'local-user.json'))).mode & 0o777, 0o600, 'its token file 0600');
  t.equal((await fs.stat(path.join(dataDir, 'stratus.sqlite'))).mode & 0o777, 0o600, 'its database 0600');
  const un = await stratusAs(alice, ['unmount', mountpoint]);
  t.equal(un.code, 0, `stratus unmount: exit 0 ${un.stderr}`);
  t.equal(await exited, 0, 'up exits 0: everything committed');
  t.match(up.stderr(), /embedded server exited \(code 0\)/, 'after stopping its server');
  t.same(await fs.readdir(mountpoint), [], 'the mountpoint is a plain folder again');
});
