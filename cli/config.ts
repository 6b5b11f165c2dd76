import type { EventEmitter } from 'node:events';
import { readFile, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { Option, type Command } from 'commander';
import { configDir, loadConfigFile, type ConfigFile } from './config-file.js';

/**
 * Where a flag's value may come from (DESIGN §9): the command line, an environment variable
 * `STRATUS_<FLAG>` (`--cache-size` → STRATUS_CACHE_SIZE, `--token` → STRATUS_TOKEN), or a key of
 * the config file (`cache_size`, at the top for every command that has the flag, or in the
 * command's section: `[mount]`, `[serve]`, `[user.add]`); first found in that order, else the
 * default. `configureOptions(program)` gives every option of every command this, so a flag added
 * anywhere gets it with nothing else to do. A value that does not parse fails with one line that
 * names the value, where it came from and what it should look like.
 *
 * Not for flags that say what one run does (which version, which trash item, --yes, --json…):
 * left in the environment or a config file, such a value would silently change what a later
 * command does (STRATUS_YES would confirm every purge). Those are in ONE_RUN.
 */

/** Flags of one run: command line only. */
const ONE_RUN = new Set(['help', 'version', 'at', 'dry-run', 'role', 'link', 'expires', 'all-links', 'id', 'yes', 'json', 'create', 'until-stdin-closes', 'config']);

/** An environment variable that is set but empty counts as unset (`STRATUS_TOKEN= stratus …`). */
const ENV_PREFIX = 'STRATUS_';

export function envName(flag: string): string {
  return ENV_PREFIX + flag.toUpperCase().replace(/-/g, '_');
}

/** `cache-size` → `cache_size` (the config file also takes the flag's own spelling). */
export function configKey(flag: string): string {
  return flag.replace(/-/g, '_');
}

const TOKEN_DISCOURAGED = 'avoid on a command line: other users see it in `ps`; prefer STRATUS_TOKEN, --token-file or the config file';

/** What configureOptions did to a command, for the checks after parsing. */
interface Configured {
  /** `requiredOption`s: commander would check them before the config file is read, so they are checked here after. */
  mandatory: Option[];
}
const configured = new WeakMap<Command, Configured>();
/** Each option's own parser (the one given to commander is wrapped to name the command line or the environment). */
const parsers = new WeakMap<Option, (value: string, previous: unknown) => unknown>();
/** Where the running command's option values came from, by attribute name: "--token", "$STRATUS_TOKEN", "token in FILE". */
const sources = new Map<string, string>();

/**
 * Where the value of option `key` (its attribute name: `token`, `cacheSize`) of the running
 * command came from, for messages ("the token from $STRATUS_TOKEN is not accepted…"); undefined
 * for a default.
 */
export function sourceOf(key: string): string | undefined {
  return sources.get(key);
}

/** Options whose variable applyConfig reads (commander reads those given with .env() up front). */
const ownEnv = new WeakSet<Option>();

function flagOf(option: Option): string | undefined {
  return option.long?.replace(/^--/, '');
}

/**
 * The flag's name for its variable and config key, if it has them: `--no-signed-urls` is
 * `signed-urls` (STRATUS_SIGNED_URLS=0, `signed_urls = false`).
 */
function settingFlag(option: Option): string | undefined {
  const flag = option.negate ? flagOf(option)?.replace(/^no-/, '') : flagOf(option);
  return flag && !ONE_RUN.has(flag) ? flag : undefined;
}

/** An on/off flag (`--allow-other`, `--no-signed-urls`): its value is true or false. */
const onOff = (option: Option) => option.isBoolean() || option.negate;

/** The commands that run something (no subcommands), with their names from the top: ['user', 'add']. */
function leaves(cmd: Command, names: string[] = []): Array<{ cmd: Command; names: string[] }> {
  if (!cmd.commands.length) return [{ cmd, names }];
  return cmd.commands.flatMap((sub) => leaves(sub, [...names, sub.name()]));
}

/** A parse failure as one line: where the value came from, then the parser's reason (naming the value if it does not). */
function invalid(where: string, value: string, err: unknown): Error {
  const reason = (err as Error).message;
  return new Error(`${where}: ${reason.includes(value) ? reason : `${reason} (got "${value}")`}`);
}

function decorate(cmd: Command, names: string[]): void {
  const mandatory: Option[] = [];
  for (const option of [...cmd.options]) {
    const flag = settingFlag(option);
    if (!flag) continue;
    // Set after the option was added, the variable is not read by commander (its listener is
    // registered by addOption): applyConfig reads it. Shown in --help all the same.
    if (!option.envVar) {
      option.env(envName(flag));
      ownEnv.add(option);
    }
    if (option.mandatory) {
      option.mandatory = false;
      mandatory.push(option);
    }
    const parse = option.parseArg;
    if (parse) {
      parsers.set(option, parse);
      // Which of commander's two sources is being parsed: its listeners run after these.
      let from: 'cli' | 'env' = 'cli';
      const events = cmd as unknown as EventEmitter; // a Command is one; its types show only on()
      events.prependListener(`option:${option.name()}`, () => (from = 'cli'));
      events.prependListener(`optionEnv:${option.name()}`, () => (from = 'env'));
      option.argParser((value: string, previous: unknown) => {
        try {
          return parse.call(option, value, previous);
        } catch (err) {
          throw invalid(from === 'cli' ? `--${flag}` : `${option.envVar} (environment, for --${flag})`, value, err);
        }
      });
    }
    if (flag === 'token') {
      option.description = `${option.description}; ${TOKEN_DISCOURAGED}`;
      if (!cmd.options.some((o) => o.long === '--token-file')) {
        cmd.addOption(new Option('--token-file <file>', 'read the device token from this file (first line; mode 0600)').env(envName('token-file')));
      }
    }
  }
  cmd.addOption(new Option('--config <file>', `config file (default: ${displayPath(configDir())}/config.{toml,yaml,yml,json})`).env('STRATUS_CONFIG'));
  const section = names.length > 1 ? `[${names.join('.')}] or [${names[0]}]` : `[${names[0]}]`;
  cmd.addHelpText(
    'after',
    `\nEach option with "(env: …)" can also be set in the config file, as its name in snake_case
(cache_size = "20GB") at the top or under ${section}. Precedence: command line,
then environment, then config file, then default.`,
  );
  configured.set(cmd, { mandatory });
}

/** ~/… for a path under the home folder, in help texts. */
function displayPath(p: string): string {
  const home = homedir();
  return p.startsWith(`${home}/`) ? `~/${p.slice(home.length + 1)}` : p;
}

type Table = Record<string, unknown>;
const isTable = (v: unknown): v is Table => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);

/** The keys a command's section may hold: its setting flags, both spellings. */
function keysOf(cmd: Command): Set<string> {
  const keys = new Set<string>();
  for (const option of cmd.options) {
    const flag = settingFlag(option);
    if (flag) keys.add(configKey(flag)).add(flag);
  }
  return keys;
}

/**
 * Refuses a key no command knows, anywhere in the file: a misspelt key (`cache_szie`) would be
 * ignored and the drive would run with a default the user believes changed. Every command
 * checks the whole file, so a mistake shows at the first command run, whichever it is.
 */
function checkKeys(program: Command, file: ConfigFile): void {
  const unknown = (key: string, where: string, known: Set<string>) =>
    new Error(`config file ${file.path}: unknown key "${key}"${where} (known there: ${[...known].filter((k) => !k.includes('-')).sort().join(', ') || 'none'})`);
  const walk = (table: Table, cmds: Command[], where: string) => {
    const known = new Set<string>();
    for (const c of cmds) for (const { cmd } of leaves(c)) for (const k of keysOf(cmd)) known.add(k);
    for (const [key, value] of Object.entries(table)) {
      const sub = cmds.flatMap((c) => c.commands).find((c) => c.name() === key);
      if (sub && isTable(value)) walk(value, [sub], `${where ? `${where.slice(0, -1)}.` : ' in ['}${key}]`);
      else if (!known.has(key)) throw unknown(key, where, known);
    }
  };
  walk(file.data, [program], '');
}

interface ConfigValue {
  value: unknown;
  /** "cache_size in [mount] of /x/config.toml" */
  where: string;
}

/** The config file's values for a command: top level, then its section, then its subsection (later wins). */
function valuesFor(file: ConfigFile, cmd: Command, names: string[]): Map<string, ConfigValue> {
  const values = new Map<string, ConfigValue>();
  const keys = keysOf(cmd);
  let table: unknown = file.data;
  for (let depth = 0; isTable(table); depth++) {
    const section = depth ? ` in [${names.slice(0, depth).join('.')}] of` : ' in';
    for (const [key, value] of Object.entries(table)) {
      if (!isTable(value) && keys.has(key)) values.set(configKey(key), { value, where: `${key}${section} ${file.path}` });
    }
    if (depth === names.length) break;
    table = table[names[depth]!];
  }
  return values;
}

/** A config value as the text a flag would be given (TOML/YAML numbers are fine; `~/` is the home folder). */
function asText(v: ConfigValue): string {
  if (typeof v.value === 'number' || typeof v.value === 'bigint') return String(v.value);
  if (typeof v.value !== 'string') throw new Error(`${v.where}: expected text or a number, not ${Array.isArray(v.value) ? 'a list' : typeof v.value}`);
  return v.value.startsWith('~/') ? path.join(homedir(), v.value.slice(2)) : v.value;
}

const RANK: Record<string, number> = { cli: 3, env: 2, config: 1 };
const rank = (source: string | undefined) => RANK[source ?? ''] ?? 0;

/** Refuses a secret in a file others can read (as ssh does with a key). */
async function assertPrivateFile(file: string, what: string): Promise<void> {
  const st = await stat(file);
  if (st.isFile() && (st.mode & 0o077) !== 0) throw new Error(`${what} can be read by other users (mode ${(st.mode & 0o777).toString(8)}): chmod 600 ${file}`);
}

async function readTokenFile(file: string, from: string): Promise<string> {
  let text: string;
  try {
    await assertPrivateFile(file, `token file ${file}`);
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`token file ${file} (${from}) does not exist`);
    if (code) throw new Error(`token file ${file} (${from}): cannot read it (${code})`);
    throw err;
  }
  const token = text.split('\n')[0]!.trim();
  if (!token) throw new Error(`token file ${file} (${from}) is empty`);
  return token;
}

/** After parsing, before the action: the config file's values, --token-file, then the required options. */
async function applyConfig(cmd: Command, names: string[]): Promise<void> {
  for (const option of cmd.options) {
    const key = option.attributeName();
    const text = option.envVar === undefined ? undefined : process.env[option.envVar];
    if (text === undefined) continue;
    const where = `${option.envVar} (environment, for ${option.long})`;
    if (onOff(option)) {
      // Commander takes a boolean flag's variable as on whatever it holds: STRATUS_ALLOW_OTHER=0 would turn it on.
      if (!ownEnv.has(option) && cmd.getOptionValueSource(key) !== 'env') continue;
      if (ownEnv.has(option) && rank(cmd.getOptionValueSource(key)) > rank('env')) continue;
      const word = text.trim().toLowerCase();
      const on = ['1', 'true', 'yes', 'on'].includes(word) ? true : ['0', 'false', 'no', 'off'].includes(word) ? false : undefined;
      if (on === undefined) throw new Error(`${where}: expected 1, true, yes or on, or 0, false, no or off (got "${text}")`);
      cmd.setOptionValueWithSource(key, on, 'env');
    } else if (ownEnv.has(option) && rank(cmd.getOptionValueSource(key)) < rank('env')) {
      const parse = parsers.get(option);
      try {
        cmd.setOptionValueWithSource(key, parse ? parse(text, undefined) : text, 'env');
      } catch (err) {
        throw invalid(where, text, err);
      }
    }
  }
  const opts = cmd.opts<{ config?: string }>();
  const explicit = opts.config === undefined ? undefined : { file: opts.config, from: cmd.getOptionValueSource('config') === 'env' ? 'STRATUS_CONFIG' : '--config' };
  const file = await loadConfigFile(explicit);
  const fromFile = new Map<string, string>();
  if (file) {
    let root = cmd;
    while (root.parent) root = root.parent;
    checkKeys(root, file);
    const values = valuesFor(file, cmd, names);
    if (values.has('token')) await assertPrivateFile(file.path, `config file ${file.path} holds a token but`);
    for (const option of cmd.options) {
      const flag = settingFlag(option);
      const v = flag && values.get(configKey(flag));
      if (!flag || !v) continue;
      const key = option.attributeName();
      if (rank(cmd.getOptionValueSource(key)) > rank('config')) continue;
      let value: unknown;
      if (onOff(option)) {
        if (typeof v.value !== 'boolean') throw new Error(`${v.where}: expected true or false (got ${JSON.stringify(v.value)})`);
        value = v.value;
      } else {
        const text = asText(v);
        const parse = parsers.get(option);
        try {
          value = parse ? parse(text, undefined) : text;
        } catch (err) {
          throw invalid(v.where, text, err);
        }
      }
      cmd.setOptionValueWithSource(key, value, 'config');
      fromFile.set(key, v.where);
    }
  }
  const tokenOption = cmd.options.find((o) => o.long === '--token');
  if (tokenOption && cmd.options.some((o) => o.long === '--token-file')) {
    const tokenFile = cmd.getOptionValue('tokenFile') as string | undefined;
    const fileSource = cmd.getOptionValueSource('tokenFile');
    if (tokenFile !== undefined && rank(fileSource) > rank(cmd.getOptionValueSource('token'))) {
      const from = fileSource === 'env' ? 'STRATUS_TOKEN_FILE' : fileSource === 'config' ? fromFile.get('tokenFile')! : '--token-file';
      const base = fileSource === 'config' && file ? path.dirname(file.path) : process.cwd();
      const tokenPath = path.resolve(base, tokenFile);
      cmd.setOptionValueWithSource('token', await readTokenFile(tokenPath, from), fileSource!);
      sources.set('token', `the token file ${tokenPath}`);
    }
  }
  for (const option of cmd.options) {
    const key = option.attributeName();
    if (sources.has(key)) continue;
    const source = cmd.getOptionValueSource(key);
    if (source === 'cli') sources.set(key, option.long ?? key);
    else if (source === 'env') sources.set(key, `$${option.envVar}`);
    else if (source === 'config') sources.set(key, fromFile.get(key) ?? 'the config file');
  }
  for (const option of configured.get(cmd)?.mandatory ?? []) {
    const flag = flagOf(option)!;
    if (cmd.getOptionValue(option.attributeName()) === undefined) {
      const where = file ? file.path : `${displayPath(configDir())}/config.toml`;
      throw new Error(`missing ${option.flags}: give it on the command line, as ${option.envVar} or as ${configKey(flag)} in ${where}`);
    }
  }
}

/**
 * Gives every option of every command of `program` its environment variable and config-file key
 * (see the top of this file), `--config FILE` (STRATUS_CONFIG) and, next to `--token`,
 * `--token-file FILE`; reads the config file before each command runs. Call once all commands
 * are added, before parsing.
 */
export function configureOptions(program: Command): void {
  for (const [name, value] of Object.entries(process.env)) {
    if (name.startsWith(ENV_PREFIX) && value === '') delete process.env[name];
  }
  const names = new Map<Command, string[]>();
  for (const { cmd, names: n } of leaves(program)) {
    if (cmd === program) continue;
    decorate(cmd, n);
    names.set(cmd, n);
  }
  program.hook('preAction', async (_program, action) => {
    const n = names.get(action);
    if (n) await applyConfig(action, n);
  });
}
