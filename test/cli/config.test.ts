import fs from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { refused, stratusCli, type CliResult } from '../helpers/cli-run.js';
import { spawnUntil, tempDir } from '../helpers/drive.js';

/**
 * Where a flag's value comes from (cli/config.ts): the command line, STRATUS_<FLAG>, the config
 * file (~/.config/stratus/config.{toml,yaml,yml,json}, --config, STRATUS_CONFIG), in that order;
 * each bad value refused with one line naming it, its source and what it should look like. And
 * the admin commands that refuse to make a database by accident (cli/server-db.ts). As users
 * type them: the compiled CLI as its own process. No FUSE: every refusal comes before a mount.
 */

type Teardown = Parameters<typeof tempDir>[0];

/** A config folder of its own (XDG_CONFIG_HOME: no config of the machine's user gets in), with `files` in it (mode 0600). */
async function configHome(t: Teardown, files: Record<string, string> = {}) {
  const dir = await tempDir(t, 'config');
  await fs.mkdir(path.join(dir, 'stratus'));
  const file = (name: string) => path.join(dir, 'stratus', name);
  for (const [name, text] of Object.entries(files)) await fs.writeFile(file(name), text, { mode: 0o600 });
  return { dir, file, env: { XDG_CONFIG_HOME: dir } };
}

const nowhere = '/nonexistent/stratus-mountpoint';
const server = ['--server', 'http://127.0.0.1:9'];
/** The mount's own first check: a run that gets there had every option (and a token) it needed. */
const reachedMount = /^stratus: mountpoint \/nonexistent\/stratus-mountpoint does not exist\n$/;

function cli(args: string[], env: Record<string, string>, cwd?: string): Promise<CliResult> {
  return stratusCli(args, { env, ...(cwd && { cwd }) });
}

t.test('a bad value on the command line names the flag, the value and what one looks like', async (t) => {
  const { env } = await configHome(t);
  const cases: Array<[string[], RegExp, string]> = [
    [['mount', nowhere, '--server', 'notaurl', '--token', 'stx_x'], /^stratus: --server: not a server URL: "notaurl" \(http:\/\/HOST:PORT or https:\/\/HOST, e\.g\. http:\/\/127\.0\.0\.1:7420\)\n$/, '--server notaurl'],
    [['mount', nowhere, ...server, '--drain-timeout', 'abc'], /^stratus: --drain-timeout: not a number of seconds: "abc" \(e\.g\. 60 or 2\.5\)\n$/, '--drain-timeout abc'],
    [['mount', nowhere, ...server, '--cache-size', '10 potatoes'], /^stratus: --cache-size: not a size: 10 potatoes \(a number and a unit: 512MB, 10GB\)\n$/, '--cache-size 10 potatoes'],
    [['serve', '--listen', '127.0.0.1'], /^stratus: --listen: not HOST:PORT: "127\.0\.0\.1" \(e\.g\. 127\.0\.0\.1:7420/, '--listen without a port'],
    [['up', '--listen', 'localhost'], /^stratus: --listen: not HOST:PORT: "localhost"/, 'up --listen without a port'],
    [['unmount', nowhere, '--timeout', 'soon'], /^stratus: --timeout: not a number of seconds: "soon"/, 'unmount --timeout soon'],
    [['gc', '--grace', '1 hour'], /^stratus: --grace: not a duration: "1 hour" \(a whole number and m, h or d/, 'gc --grace 1 hour'],
  ];
  for (const [args, line, what] of cases) refused(t, await cli(args, env), line, what);
  refused(t, await cli(['mount', nowhere, '--token', 'stx_x'], env), /^stratus: missing --server <url>: give it on the command line, as STRATUS_SERVER or as server in ~\/\S+|\/\S+config\.toml\n$/, 'no --server anywhere');
  const ok = await cli(['mount', nowhere, '--server', 'https://sync.example.org/', '--cache-size', '1.5GB', '--drain-timeout', '2.5', '--token', 'stx_x'], env);
  refused(t, ok, reachedMount, 'good values pass (https, a fraction of seconds, 1.5GB)');
});

t.test('a bad value from the environment names the variable, the flag and the value', async (t) => {
  const { env } = await configHome(t);
  const cases: Array<[Record<string, string>, string[], RegExp, string]> = [
    [{ STRATUS_DRAIN_TIMEOUT: 'abc' }, ['mount', nowhere, ...server], /^stratus: STRATUS_DRAIN_TIMEOUT \(environment, for --drain-timeout\): not a number of seconds: "abc"/, 'STRATUS_DRAIN_TIMEOUT=abc'],
    [{ STRATUS_SERVER: 'notaurl' }, ['mount', nowhere], /^stratus: STRATUS_SERVER \(environment, for --server\): not a server URL: "notaurl"/, 'STRATUS_SERVER=notaurl'],
    [{ STRATUS_CACHE_SIZE: '10 potatoes' }, ['mount', nowhere, ...server], /^stratus: STRATUS_CACHE_SIZE \(environment, for --cache-size\): not a size: 10 potatoes/, 'STRATUS_CACHE_SIZE=10 potatoes'],
    [{ STRATUS_LISTEN: '127.0.0.1' }, ['serve'], /^stratus: STRATUS_LISTEN \(environment, for --listen\): not HOST:PORT: "127\.0\.0\.1"/, 'STRATUS_LISTEN without a port'],
    [{ STRATUS_ALLOW_OTHER: 'maybe' }, ['mount', nowhere, ...server], /^stratus: STRATUS_ALLOW_OTHER \(environment, for --allow-other\): expected 1, true, yes or on, or 0, false, no or off \(got "maybe"\)\n$/, 'a flag variable that is neither on nor off'],
  ];
  for (const [vars, args, line, what] of cases) refused(t, await cli([...args, ...(args[0] === 'mount' ? ['--token', 'stx_x'] : [])], { ...env, ...vars }), line, what);
  refused(t, await cli(['mount', nowhere, '--token', 'stx_x'], { ...env, STRATUS_SERVER: 'http://127.0.0.1:9', STRATUS_ALLOW_OTHER: '0' }), reachedMount, 'STRATUS_SERVER stands in for --server; STRATUS_ALLOW_OTHER=0 is a valid off');
  refused(t, await cli(['mount', nowhere, '--drain-timeout', '5', ...server, '--token', 'stx_x'], { ...env, STRATUS_DRAIN_TIMEOUT: 'abc' }), reachedMount, 'the command line wins: the bad variable is not even read');
  refused(t, await cli(['mount', nowhere, ...server, '--token', 'stx_x'], { ...env, STRATUS_DRAIN_TIMEOUT: '' }), reachedMount, 'an empty variable counts as unset');
});

t.test('a bad value in the config file names the key, its section and the file', async (t) => {
  const cases: Array<[string, string, string[], RegExp, string]> = [
    ['config.toml', 'server = "http://127.0.0.1:9"\n[mount]\ndrain_timeout = "abc"\n', ['mount', nowhere], /^stratus: drain_timeout in \[mount\] of \S+\/stratus\/config\.toml: not a number of seconds: "abc" \(e\.g\. 60 or 2\.5\)\n$/, 'TOML, in a section'],
    ['config.yaml', 'server: http://127.0.0.1:9\ncache_size: 10 potatoes\n', ['mount', nowhere], /^stratus: cache_size in \S+\/stratus\/config\.yaml: not a size: 10 potatoes/, 'YAML, at the top'],
    ['config.json', '{"mount": {"server": "notaurl"}}\n', ['mount', nowhere], /^stratus: server in \[mount\] of \S+\/stratus\/config\.json: not a server URL: "notaurl"/, 'JSON'],
    ['config.toml', 'server = "http://127.0.0.1:9"\ncache_size = true\n', ['mount', nowhere], /^stratus: cache_size in \S+config\.toml: expected text or a number, not boolean\n$/, 'a size given as true'],
    ['config.toml', 'server = "http://127.0.0.1:9"\nallow_other = "yes"\n', ['mount', nowhere], /^stratus: allow_other in \S+config\.toml: expected true or false \(got "yes"\)\n$/, 'a flag given as text'],
    ['config.toml', '[serve]\nlisten = "127.0.0.1"\n', ['serve'], /^stratus: listen in \[serve\] of \S+config\.toml: not HOST:PORT: "127\.0\.0\.1"/, '[serve] listen without a port'],
  ];
  for (const [name, text, args, line, what] of cases) {
    const { env } = await configHome(t, { [name]: text });
    refused(t, await cli([...args, ...(args[0] === 'mount' ? ['--token', 'stx_x'] : [])], env), line, what);
  }
  const { env } = await configHome(t, { 'config.toml': 'server = "http://127.0.0.1:9"\ncache_size = 1073741824\ndrain_timeout = 2.5\n[mount]\ncache = "~/cache-from-config"\n' });
  refused(t, await cli(['mount', nowhere, '--token', 'stx_x'], env), reachedMount, 'numbers are taken as the flag would take them; good values pass');
});

t.test('a config file that cannot be trusted is refused whole, naming the file', async (t) => {
  const cases: Array<[Record<string, string>, RegExp, string]> = [
    [{ 'config.toml': 'server = "http://127.0.0.1:9"\ncache_szie = "1GB"\n' }, /^stratus: config file \S+config\.toml: unknown key "cache_szie" \(known there: [a-z_, ]*cache_size[a-z_, ]*\)\n$/, 'a misspelt key (it would be ignored and the default used)'],
    [{ 'config.toml': '[mount]\nlisten = "127.0.0.1:7420"\n' }, /^stratus: config file \S+config\.toml: unknown key "listen" in \[mount\] \(known there: allow_other, cache, cache_size, /, 'a key of another command in [mount]'],
    [{ 'config.toml': '[user.add]\nserver = "http://x:1"\n' }, /^stratus: config file \S+config\.toml: unknown key "server" in \[user\.add\]/, 'a nested section'],
    [{ 'config.toml': 'server = "http://127.0.0.1:9\n' }, /^stratus: config file \S+config\.toml is not valid TOML: /, 'TOML that does not parse'],
    [{ 'config.yaml': 'server: [\n' }, /^stratus: config file \S+config\.yaml is not valid YAML: /, 'YAML that does not parse'],
    [{ 'config.toml': 'server = "http://127.0.0.1:9"\n', 'config.json': '{}' }, /^stratus: several config files: \S+config\.toml, \S+config\.json: keep one\n$/, 'two config files: which counts would be a guess'],
  ];
  for (const [files, line, what] of cases) {
    const { env } = await configHome(t, files);
    refused(t, await cli(['status'], env), line, `${what} (refused by any command: stratus status)`);
  }
  const { env, dir } = await configHome(t);
  refused(t, await cli(['status', '--config', path.join(dir, 'nope.toml')], env), /^stratus: config file \S+nope\.toml \(--config\) does not exist\n$/, '--config FILE that is not there');
  refused(t, await cli(['status'], { ...env, STRATUS_CONFIG: path.join(dir, 'stratus.ini') }), /^stratus: config file \S+stratus\.ini \(STRATUS_CONFIG\) must end in \.toml, \.yaml, \.yml or \.json\n$/, 'STRATUS_CONFIG of an unknown format');
  const secret = path.join(dir, 'secret.toml');
  await fs.writeFile(secret, 'token = "stx_x"\n', { mode: 0o644 });
  await fs.chmod(secret, 0o644);
  refused(t, await cli(['mount', nowhere, ...server, '--config', secret], env), /^stratus: config file \S+secret\.toml holds a token but can be read by other users \(mode 644\): chmod 600 \S+secret\.toml\n$/, 'a token in a file others can read');
});

t.test('precedence: command line, then environment, then config file (its command section over its top), then default', async (t) => {
  const base = await tempDir(t, 'precedence');
  const { env } = await configHome(t, { 'config.toml': `listen = "127.0.0.5:0"\ndata = "${base}/top"\n[serve]\nlisten = "127.0.0.2:0"\n` });
  /** `stratus serve` as started with `args` and `vars`: the address and data folder it says it serves. */
  const served = async (args: string[], vars: Record<string, string>) => {
    const { child, match } = await spawnUntil(['serve', ...args], /serving on http:\/\/(\S+):\d+ \(data in (.+)\)/, 30_000, { env: { ...process.env, ...env, ...vars } });
    const exit = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exit;
    return `${match[1]} ${match[2]}`;
  };
  t.equal(await served([], {}), `127.0.0.2 ${base}/top`, 'config file: [serve] listen over the top-level listen; data from the top level');
  t.equal(await served([], { STRATUS_LISTEN: '127.0.0.3:0' }), `127.0.0.3 ${base}/top`, 'the environment over the config file');
  t.equal(await served(['--listen', '127.0.0.4:0', '--data', `${base}/cli`], { STRATUS_LISTEN: '127.0.0.3:0', STRATUS_DATA: `${base}/env` }), `127.0.0.4 ${base}/cli`, 'the command line over both');
  const other = await configHome(t, { 'other.yaml': `serve:\n  listen: 127.0.0.6:0\n  data: ${base}/other\n` });
  t.equal(await served([], { STRATUS_CONFIG: other.file('other.yaml') }), `127.0.0.6 ${base}/other`, 'STRATUS_CONFIG names another file, which replaces the default one');
  const help = (await cli(['serve', '--help'], env)).stdout.replace(/\s+/g, ' ');
  t.match(help, /--listen <host:port> address to serve on \(default: "127\.0\.0\.1:7420", env: STRATUS_LISTEN\)/, 'the default, shown in --help with the variable');
});

t.test('tokens: --token is discouraged; --token-file, STRATUS_TOKEN and the config file, in their order', async (t) => {
  const { env, dir, file } = await configHome(t);
  const tokenFile = path.join(dir, 'token');
  await fs.writeFile(tokenFile, 'stx_fromfile\n', { mode: 0o600 });
  const help = (await cli(['mount', '--help'], env)).stdout.replace(/\s+/g, ' ');
  t.match(help, /--token <token> device token; avoid on a command line: other users see it in `ps`; prefer STRATUS_TOKEN, --token-file or the config file \(env: STRATUS_TOKEN\)/, '--help says why not --token');
  t.match(help, /--token-file <file> read the device token from this file \(first line; mode 0600\) \(env: STRATUS_TOKEN_FILE\)/, '--help offers --token-file');
  refused(t, await cli(['mount', nowhere, ...server], env), /^stratus: no token: set STRATUS_TOKEN, or give --token-file FILE or token_file in the config file \(see `stratus user add`\)\n$/, 'no token anywhere');
  refused(t, await cli(['mount', nowhere, ...server, '--token-file', tokenFile], env), reachedMount, '--token-file gives the token');
  refused(t, await cli(['mount', nowhere, ...server], { ...env, STRATUS_TOKEN: 'stx_x' }), reachedMount, 'STRATUS_TOKEN gives the token, as before');
  refused(t, await cli(['mount', nowhere, ...server, '--token-file', path.join(dir, 'missing')], env), /^stratus: token file \S+missing \(--token-file\) does not exist\n$/, 'a --token-file that is not there');
  refused(t, await cli(['mount', nowhere, ...server, '--token', 'stx_x'], { ...env, STRATUS_TOKEN_FILE: path.join(dir, 'missing') }), reachedMount, '--token over STRATUS_TOKEN_FILE: the file is not read');
  const empty = path.join(dir, 'empty');
  await fs.writeFile(empty, '\n', { mode: 0o600 });
  refused(t, await cli(['mount', nowhere, ...server], { ...env, STRATUS_TOKEN_FILE: empty }), /^stratus: token file \S+empty \(STRATUS_TOKEN_FILE\) is empty\n$/, 'an empty token file');
  const open = path.join(dir, 'open-token');
  await fs.writeFile(open, 'stx_x\n');
  await fs.chmod(open, 0o644);
  refused(t, await cli(['mount', nowhere, ...server, '--token-file', open], env), /^stratus: token file \S+open-token can be read by other users \(mode 644\): chmod 600 \S+open-token\n$/, 'a token file others can read');
  await fs.writeFile(file('config.toml'), '[mount]\ntoken_file = "missing-token"\n', { mode: 0o600 });
  refused(t, await cli(['mount', nowhere, ...server], env), /^stratus: token file \S+\/stratus\/missing-token \(token_file in \[mount\] of \S+config\.toml\) does not exist\n$/, 'token_file in the config file: relative to the file, named with it');
  refused(t, await cli(['mount', nowhere, ...server], { ...env, STRATUS_TOKEN: 'stx_x' }), reachedMount, 'STRATUS_TOKEN over the config file: its token_file is not read');
});

t.test('every setting flag of every command shows its environment variable in --help', async (t) => {
  /** Flags of one run (cli/config.ts ONE_RUN): command line only. */
  const oneRun = new Set(['--help', '--version', '--at', '--dry-run', '--role', '--link', '--expires', '--all-links', '--id', '--yes', '--json', '--create', '--until-stdin-closes']);
  const { env } = await configHome(t);
  const helps = new Map<string, string>();
  const commands = async (prefix: string[]): Promise<string[][]> => {
    const help = (await cli([...prefix, '--help'], env)).stdout;
    helps.set(prefix.join(' '), help);
    const names = [...(help.split('\nCommands:\n')[1] ?? '').split('\n\n')[0]!.matchAll(/^ {2}([a-z][a-z-]*)/gm)].map((m) => m[1]!).filter((n) => n !== 'help');
    const found: string[][] = names.length ? [] : [prefix];
    for (const n of names) found.push(...(await commands([...prefix, n])));
    return found;
  };
  const leaves = await commands([]);
  t.ok(leaves.length >= 15, `found the commands: ${leaves.map((l) => l.join(' ')).join(', ')}`);
  for (const cmd of leaves) {
    const help = helps.get(cmd.join(' '))!;
    const options = (help.split('\nOptions:\n')[1] ?? '').split(/\n\n/)[0]!.split(/\n(?= {2}-)/);
    for (const entry of options) {
      const flag = /--[a-z-]+/.exec(entry)?.[0];
      if (!flag || oneRun.has(flag)) continue;
      // --no-signed-urls: STRATUS_SIGNED_URLS (=0 turns it off)
      const want = `STRATUS_${flag.replace(/^--(no-)?/, '').toUpperCase().replace(/-/g, '_')}`;
      t.match(entry.replace(/\s+/g, ' '), `env: ${want})`, `stratus ${cmd.join(' ')} ${flag}: (env: ${want})`);
    }
    t.match(help, /can also be set in the config file/, `stratus ${cmd.join(' ')} --help explains the config file`);
  }
});

t.test('user add, user token and gc refuse to create a database by accident', async (t) => {
  const cwd = await tempDir(t, 'no-db');
  const { env } = await configHome(t);
  const data = path.join(await fs.realpath(cwd), 'stratus-data');
  const esc = data.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  const noDb = `^stratus: no Stratus database in ${esc} \\(${esc}/stratus\\.sqlite does not exist\\): give the --data folder \\(or --db URL\\) of your server, or run \`stratus serve --data ${esc}\` once first`;
  refused(t, await cli(['user', 'add', 'alice'], env, cwd), new RegExp(`${noDb}, or add --create to make a new one in ${esc}\n$`), 'user add in a folder with no database');
  refused(t, await cli(['user', 'token', 'alice'], env, cwd), new RegExp(`${noDb}\n$`), 'user token in a folder with no database');
  refused(t, await cli(['gc'], env, cwd), new RegExp(`${noDb}\n$`), 'gc in a folder with no database');
  await t.rejects(fs.access(data), 'nothing was created');
  const other = path.join(cwd, 'other');
  await fs.mkdir(other);
  await fs.writeFile(path.join(other, 'stratus.sqlite'), 'not a database at all\n');
  refused(t, await cli(['user', 'add', 'alice', '--data', other], env, cwd), /^stratus: \S+other\/stratus\.sqlite is not a Stratus database: give the --data folder \(or --db URL\) of your server\n$/, 'a file that is not a Stratus database');
  t.match((await cli(['user', 'add', '--help'], env)).stdout, /--create\s+make the database if there is none yet/, 'user add --help offers --create');
  const created = await cli(['user', 'add', 'alice', '--create'], env, cwd);
  t.equal(created.code, 0, `--create makes it: ${created.stderr}`);
  const again = await cli(['user', 'token', 'alice', '--device', 'laptop'], env, cwd);
  t.equal(again.code, 0, `then user token finds it: ${again.stderr}`);
  t.match(again.stdout.trim().split('\n').at(-1), /^stx_/, 'and prints a token');
});
