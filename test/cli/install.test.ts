import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { root, tempDir } from '../helpers/drive.js';

/**
 * The system install of the README: `npm install -g .` (after `npm ci`) puts `stratus` and
 * `mount.fuse.stratus` on PATH, and the systemd units in contrib/systemd are valid. Checked
 * without touching the machine: a global install into a temp prefix (npm links the checkout
 * there, as it does under /usr/local; --ignore-scripts --offline: the checkout is built already,
 * this checks the package's bin entries, shebangs and modes), `npm pack --dry-run` for what a
 * tarball would carry, and `systemd-analyze verify` of each unit pointed at that installed bin.
 */

const exec = promisify(execFile);
const npm = (args: string[], cwd: string) => exec('npm', [...args, '--no-audit', '--no-fund'], { cwd, timeout: 120_000 });

const units = path.join(root, 'contrib', 'systemd');

t.test('npm install -g puts stratus and mount.fuse.stratus on PATH, and they run', async (t) => {
  const prefix = await tempDir(t, 'prefix');
  await npm(['install', '-g', '--prefix', prefix, '--ignore-scripts', '--offline', root], prefix);
  const bin = path.join(prefix, 'bin');
  const env = { ...process.env, PATH: `${bin}:${process.env.PATH}` };
  const version = await exec('stratus', ['--version'], { env });
  t.match(version.stdout, /^\d+\.\d+\.\d+\n$/, '`stratus --version` runs from PATH (shebang, executable)');
  const help = await exec('stratus', ['--help'], { env });
  t.match(help.stdout, /Usage: stratus/, '`stratus --help`');
  const helper = await exec('mount.fuse.stratus', [], { env }).then(
    () => ({ code: 0, stderr: '' }),
    (e: { code: number; stderr: string }) => e,
  );
  t.equal(helper.code, 1, '`mount.fuse.stratus` without arguments fails');
  t.match(helper.stderr, /^mount\.fuse\.stratus: usage: mount\.fuse\.stratus SERVER MOUNTPOINT/, 'and says how it is run');
});

t.test('npm pack carries the build, the fuse-native patch the install applies, and the units', async (t) => {
  const { stdout } = await npm(['pack', '--dry-run', '--json', '--ignore-scripts'], root);
  const files = new Set((JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path));
  const pkg = JSON.parse(await fs.readFile(path.join(root, 'package.json'), 'utf8')) as { bin: Record<string, string>; scripts: Record<string, string> };
  for (const [name, file] of Object.entries(pkg.bin)) {
    t.ok(files.has(file), `bin ${name}: ${file} is packed`);
    t.match(await fs.readFile(path.join(root, file), 'utf8'), /^#!\/usr\/bin\/env node\n/, `bin ${name}: starts with a node shebang`);
  }
  t.match(pkg.scripts.postinstall, /patch-package/, 'the install patches fuse-native…');
  const patches = await fs.readdir(path.join(root, 'patches'));
  for (const p of patches) t.ok(files.has(`patches/${p}`), `…and patches/${p} is packed`);
  for (const unit of await fs.readdir(units)) t.ok(files.has(`contrib/systemd/${unit}`), `contrib/systemd/${unit} is packed`);
  t.notOk([...files].some((f) => f.startsWith('test/') || f.startsWith('dist/test/')), 'no tests');
});

/** `systemd-analyze verify` of a unit, with ExecStart pointed at `stratus`; its warnings (an unknown key is only a warning) fail it too. */
async function verify(unitFile: string, name: string, stratus: string, user: boolean, dir: string): Promise<{ code: number; output: string }> {
  const text = (await fs.readFile(unitFile, 'utf8')).replaceAll('/usr/local/bin/stratus', stratus);
  const file = path.join(dir, name);
  await fs.writeFile(file, text);
  const runtime = path.join(dir, 'runtime');
  await fs.mkdir(runtime, { recursive: true, mode: 0o700 });
  const args = ['verify', ...(user ? ['--user'] : []), file];
  return exec('systemd-analyze', args, { env: { ...process.env, XDG_RUNTIME_DIR: runtime, SYSTEMD_LOG_COLOR: '0' } }).then(
    ({ stdout, stderr }) => ({ code: 0, output: `${stdout}${stderr}` }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, output: `${e.stdout}${e.stderr}` }),
  );
}

const analyzer = await exec('sh', ['-c', 'command -v systemd-analyze']).catch(() => undefined);
t.test('the systemd units pass systemd-analyze verify', { skip: analyzer ? false : 'systemd-analyze is not installed (Debian package systemd; .ci/run installs it)' }, async (t) => {
  const dir = await tempDir(t, 'units');
  const prefix = await tempDir(t, 'prefix');
  await npm(['install', '-g', '--prefix', prefix, '--ignore-scripts', '--offline', root], prefix);
  const stratus = path.join(prefix, 'bin', 'stratus');
  const serve = await verify(path.join(units, 'stratus-serve.service'), 'stratus-serve.service', stratus, false, dir);
  t.same(serve, { code: 0, output: '' }, 'stratus-serve.service: a system unit, no error, no warning');
  const mount = await verify(path.join(units, 'stratus-mount@.service'), 'stratus-mount@home-me-Stratus.service', stratus, true, dir);
  t.same(mount, { code: 0, output: '' }, 'stratus-mount@.service as ~/Stratus: a user unit, no error, no warning');
  const broken = await verify(path.join(units, 'stratus-serve.service'), 'stratus-serve.service', path.join(prefix, 'bin', 'no-such-stratus'), false, dir);
  t.not(broken.code, 0, 'the check has teeth: a unit whose binary is missing fails');
  const original = await fs.readFile(path.join(units, 'stratus-serve.service'), 'utf8');
  t.match(original, /^ExecStart=\/usr\/local\/bin\/stratus serve$/m, 'as shipped: the path `sudo npm install -g .` gives');
});
