/**
 * What mount(8) gives a mount helper, as `stratus mount` arguments. For `mount -t fuse.stratus
 * SOURCE DIR -o OPTIONS` and an fstab line (`http://host:7420 /home/me/Stratus fuse.stratus
 * noauto,user,token_file=/home/me/.config/stratus/token,cache_size=20GB 0 0`) mount(8) runs
 * `/sbin/mount.fuse.stratus SOURCE DIR [-sfnv] [-N NS] [-o OPTIONS] [-t TYPE]` (see mount(8),
 * "External helpers"). As rclone's mount helper does: `key=value` becomes `--key value`
 * (`cache_size` → `--cache-size`), a bare `key` becomes `--key`, and what mount(8) itself or
 * systemd acts on (rw, noauto, user, _netdev, nofail, x-systemd.*…) is dropped. `token=` goes
 * in the environment (STRATUS_TOKEN) instead: a command line shows in `ps`. SOURCE is the server
 * URL; anything else (`stratus`) leaves the server to the config file or STRATUS_SERVER.
 */

export interface HelperArgs {
  /** `stratus mount` arguments (after `mount`). */
  args: string[];
  /** Environment variables to add. */
  env: Record<string, string>;
  /** -f: check and say what would be run, mount nothing. */
  fake: boolean;
  /** -v */
  verbose: boolean;
  mountpoint: string;
}

/** Options of mount(8), the kernel's generic ones and systemd's: not the drive's business. */
const GENERIC = new Set([
  'rw', 'defaults', 'auto', 'noauto', 'user', 'nouser', 'users', 'owner', 'group', '_netdev', 'nofail',
  'dev', 'nodev', 'suid', 'nosuid', 'exec', 'noexec', 'async', 'sync', 'atime', 'noatime', 'relatime',
  'norelatime', 'strictatime', 'nostrictatime', 'lazytime', 'nolazytime', 'diratime', 'nodiratime', 'loud', 'silent',
]);

function dropped(key: string): boolean {
  return GENERIC.has(key) || key.startsWith('x-') || key === 'comment';
}

export class HelperUsageError extends Error {}

/** Splits `-o a=1,b,c=x\,y` into options (a backslash keeps a comma in a value). */
function splitOptions(text: string): string[] {
  return text.split(/(?<!\\),/).map((o) => o.replace(/\\,/g, ',')).filter((o) => o.length > 0);
}

export function helperArgs(argv: string[]): HelperArgs {
  const positional: string[] = [];
  const options: string[] = [];
  let fake = false;
  let verbose = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-o' || a === '-t' || a === '-N') {
      const value = argv[++i];
      if (value === undefined) throw new HelperUsageError(`${a} needs a value`);
      if (a === '-o') options.push(...splitOptions(value));
    } else if (a.startsWith('-o') && a.length > 2) options.push(...splitOptions(a.slice(2)));
    else if (/^-[sfnv]+$/.test(a)) {
      fake ||= a.includes('f');
      verbose ||= a.includes('v');
    } else if (a.startsWith('-')) throw new HelperUsageError(`unknown helper option ${a} (mount(8) passes -s, -f, -n, -v, -N NS, -o OPTIONS, -t TYPE)`);
    else positional.push(a);
  }
  if (positional.length !== 2) throw new HelperUsageError('usage: mount.fuse.stratus SERVER MOUNTPOINT [-o OPTIONS] (as mount -t fuse.stratus runs it)');
  const [source, mountpoint] = positional as [string, string];
  const args = [mountpoint];
  const env: Record<string, string> = {};
  if (/^https?:\/\//.test(source)) args.push('--server', source);
  for (const option of options) {
    const eq = option.indexOf('=');
    const key = eq < 0 ? option : option.slice(0, eq);
    if (dropped(key)) continue;
    if (key === 'ro') throw new HelperUsageError('read-only mounts (ro) are not supported: the drive syncs both ways');
    const flag = key.replace(/_/g, '-');
    if (!/^[a-z][a-z0-9-]*$/.test(flag)) throw new HelperUsageError(`not a mount option: "${option}"`);
    if (flag === 'token') env.STRATUS_TOKEN = option.slice(eq + 1);
    else if (eq < 0) args.push(`--${flag}`);
    else args.push(`--${flag}`, option.slice(eq + 1));
  }
  return { args, env, fake, verbose, mountpoint };
}
