import { execFile } from 'node:child_process';
import crypto, { type Cipher } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { parallel, runQuiet } from './helpers.js';
import { stratusBin } from './serve-process.js';

/**
 * What the tree group unpacks, made once per run: a node_modules-like tree of small files (names,
 * sizes and bytes from a seeded PRNG, so every run unpacks the same tree) packed with tar, a git
 * repository of another such tree, and real npm package tarballs packed offline from the
 * project's own node_modules.
 */

export interface TreeShape {
  files: number;
  dirs: number;
  seed: string;
}

export interface MadeTree {
  files: number;
  /** Folders below the top one. */
  dirs: number;
  /** Symbolic links (node_modules/.bin/*), besides the files. */
  links: number;
  bytes: number;
}

/** A seeded stream of pseudo-random bytes (AES-128-CTR keystream) and numbers drawn from it. */
class Seeded {
  private readonly cipher: Cipher;

  constructor(seed: string) {
    const key = crypto.createHash('sha256').update(seed).digest().subarray(0, 16);
    this.cipher = crypto.createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  }

  bytes(n: number): Buffer {
    return this.cipher.update(Buffer.alloc(n));
  }

  /** Uniform in [0, 1). */
  unit(): number {
    return this.bytes(4).readUInt32LE() / 2 ** 32;
  }

  below(n: number): number {
    return Math.floor(this.unit() * n);
  }

  /** A file size as small files in node_modules go: log-normal around 2.5 KB, a few empty, none over 1 MiB. */
  fileSize(): number {
    if (this.unit() < 0.02) return 0;
    const normal = Math.sqrt(-2 * Math.log(1 - this.unit())) * Math.cos(2 * Math.PI * this.unit());
    return Math.min(1024 * 1024, Math.round(Math.exp(Math.log(2500) + 1.2 * normal)));
  }
}

/** Subfolders a package may have, parents first (a package takes a prefix of this list). */
const PACKAGE_DIRS = ['lib', 'lib/internal', 'dist', 'dist/esm', 'types', 'src'];
const WORDS = ['index', 'util', 'parse', 'format', 'stream', 'types', 'core', 'helpers', 'errors', 'compat'];
const EXTS = ['.js', '.js', '.js', '.d.ts', '.js.map', '.json', '.md', '.cjs', '.mjs'];

/**
 * Writes the tree into `top` (made here): `node_modules/` with packages `pkg-NNNN/` (some with
 * subfolders) until there are `dirs` folders, `files` files spread over them (each package's
 * folder has at least one), and a link in `node_modules/.bin/` to about half the packages.
 */
export async function makeTree(top: string, shape: TreeShape): Promise<MadeTree> {
  const rng = new Seeded(shape.seed);
  const dirs = ['node_modules', 'node_modules/.bin'];
  const packages: string[] = [];
  while (dirs.length < shape.dirs) {
    const pkg = `pkg-${String(packages.length).padStart(4, '0')}`;
    packages.push(pkg);
    dirs.push(`node_modules/${pkg}`);
    const sub = rng.below(PACKAGE_DIRS.length + 1);
    for (const d of PACKAGE_DIRS.slice(0, sub)) if (dirs.length < shape.dirs) dirs.push(`node_modules/${pkg}/${d}`);
  }
  const holders = dirs.slice(2);
  const files = Array.from({ length: shape.files }, (_, i) => {
    const dir = i < holders.length ? holders[i]! : holders[rng.below(holders.length)]!;
    const name = i < holders.length ? (dir.split('/').length === 2 ? 'package.json' : 'index.js') : `${WORDS[rng.below(WORDS.length)]}-${i}${EXTS[rng.below(EXTS.length)]}`;
    return { path: `${dir}/${name}`, size: rng.fileSize() };
  });
  const links = packages.filter(() => rng.unit() < 0.5).map((pkg) => ({ path: `node_modules/.bin/${pkg}`, target: `../${pkg}/package.json` }));

  for (const d of dirs) await fs.mkdir(path.join(top, d), { recursive: true });
  // Contents are drawn in file order (one stream), written 32 at a time.
  const contents = files.map((f) => rng.bytes(f.size));
  await parallel(files.length, 32, (i) => fs.writeFile(path.join(top, files[i]!.path), contents[i]!));
  for (const l of links) await fs.symlink(l.target, path.join(top, l.path));
  return { files: files.length, dirs: dirs.length, links: links.length, bytes: files.reduce((a, f) => a + f.size, 0) };
}

/** `tar cf` of `dir` (members named after its last component, in name order). */
export async function packTar(dir: string, tarball: string): Promise<void> {
  await runQuiet('tar', ['-cf', tarball, '--sort=name', '-C', path.dirname(dir), path.basename(dir)]);
}

/** A git repository at `repo` with one commit of a generated tree. */
export async function makeRepo(repo: string, shape: TreeShape): Promise<MadeTree> {
  const made = await makeTree(repo, shape);
  const git = (...args: string[]) => runQuiet('git', ['-c', 'init.defaultBranch=main', '-c', 'user.name=bench', '-c', 'user.email=bench@localhost', ...args], { cwd: repo });
  await git('init', '-q');
  await git('add', '-A');
  await git('commit', '-q', '-m', 'generated tree');
  return made;
}

/**
 * The npm tarball of `name` as installed in the project's node_modules: `npm pack` offline (no
 * network), or `tar czf` of the folder when npm cannot pack it. Resolves with the tarball's path
 * and how many files it holds.
 */
export async function packNpm(name: string, dest: string, log: (msg: string) => void): Promise<{ tarball: string; files: number }> {
  const dir = path.resolve(path.dirname(stratusBin), '..', '..', 'node_modules', name);
  const { version } = JSON.parse(await fs.readFile(path.join(dir, 'package.json'), 'utf8')) as { version: string };
  await fs.mkdir(dest, { recursive: true });
  const tarball = path.join(dest, `${name.replace(/^@/, '').replace('/', '-')}-${version}.tgz`);
  try {
    await runQuiet('npm', ['pack', dir, '--pack-destination', dest, '--offline', '--ignore-scripts', '--silent']);
    await fs.access(tarball);
  } catch (err) {
    log(`npm pack ${name} failed (${(err as Error).message.split('\n')[0]}): packing its folder with tar czf instead`);
    await runQuiet('tar', ['-czf', tarball, '-C', path.dirname(dir), path.basename(dir)]);
  }
  const { stdout } = await promisify(execFile)('tar', ['-tzf', tarball], { maxBuffer: 64 * 1024 * 1024 });
  return { tarball, files: stdout.split('\n').filter((l) => l && !l.endsWith('/')).length };
}
