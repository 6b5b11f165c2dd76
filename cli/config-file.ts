import { access, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { lilconfig, type Loader } from 'lilconfig';
import { parse as parseToml } from 'smol-toml';
import { parse as parseYaml } from 'yaml';

/**
 * The config file of DESIGN §9: `$XDG_CONFIG_HOME/stratus/config.{toml,yaml,yml,json}` (else
 * `~/.config/stratus/…`), or the file `--config FILE` / `STRATUS_CONFIG` names. Only data formats:
 * a config file never runs code (no .js), so pointing a root service at one is safe to read.
 * lilconfig finds and loads it (search order, empty files, a JSON BOM); `smol-toml` and `yaml`
 * parse TOML and YAML.
 */

export const CONFIG_NAMES = ['config.toml', 'config.yaml', 'config.yml', 'config.json'];

export interface ConfigFile {
  /** Absolute path of the file. */
  path: string;
  /** Its top level: shared keys and `[command]` sections. */
  data: Record<string, unknown>;
}

/** The folder the config file is looked for in. */
export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME && path.isAbsolute(env.XDG_CONFIG_HOME) ? env.XDG_CONFIG_HOME : path.join(homedir(), '.config');
  return path.join(base, 'stratus');
}

const parseWith =
  (format: string, parse: (text: string) => unknown): Loader =>
  (file, content) => {
    try {
      return parse(content);
    } catch (err) {
      // The parsers' messages say where (line, column); one line of it.
      throw new Error(`config file ${file} is not valid ${format}: ${(err as Error).message.split('\n')[0]}`);
    }
  };

const loaders = {
  '.toml': parseWith('TOML', parseToml),
  '.yaml': parseWith('YAML', parseYaml),
  '.yml': parseWith('YAML', parseYaml),
  '.json': parseWith('JSON', (text) => JSON.parse(text.replace(/^\uFEFF/, ''))),
};

function explorer(stopDir: string) {
  return lilconfig('stratus', { searchPlaces: CONFIG_NAMES, loaders, stopDir, ignoreEmptySearchPlaces: false, cache: false });
}

function asTable(file: string, config: unknown): Record<string, unknown> {
  if (config === undefined || config === null) return {};
  if (typeof config !== 'object' || Array.isArray(config)) throw new Error(`config file ${file} must hold keys and values (a table), not ${Array.isArray(config) ? 'a list' : typeof config}`);
  return config as Record<string, unknown>;
}

/**
 * The config file in force: `explicit` (from --config or STRATUS_CONFIG; `from` says which) must
 * exist and end in .toml, .yaml, .yml or .json; else the one in configDir(), if any. Two of them
 * there is refused: which one counts would be a guess.
 */
export async function loadConfigFile(explicit?: { file: string; from: string }): Promise<ConfigFile | undefined> {
  if (explicit) {
    const file = path.resolve(explicit.file);
    if (!(path.extname(file) in loaders)) throw new Error(`config file ${file} (${explicit.from}) must end in .toml, .yaml, .yml or .json`);
    const st = await stat(file).catch(() => undefined);
    if (!st?.isFile()) throw new Error(`config file ${file} (${explicit.from}) does not exist`);
    const found = await explorer(path.dirname(file)).load(file);
    return { path: file, data: asTable(file, found?.config) };
  }
  const dir = configDir();
  const present: string[] = [];
  for (const name of CONFIG_NAMES) {
    if (await access(path.join(dir, name)).then(() => true, () => false)) present.push(path.join(dir, name));
  }
  if (present.length > 1) throw new Error(`several config files: ${present.join(', ')}: keep one`);
  if (!present.length) return undefined;
  const found = await explorer(dir).search(dir);
  return found ? { path: found.filepath, data: asTable(found.filepath, found.config) } : undefined;
}
