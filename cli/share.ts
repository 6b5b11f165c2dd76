import { Command, Option } from 'commander';
import type { StratusClient } from '../protocol/client.js';
import { ApiError } from '../protocol/errors.js';
import type { NodeInfo, Role, ShareInfo } from '../protocol/types.js';
import { defaultDrive, driveClient, locateOnDrive, type DrivePath } from './drive-path.js';
import { table } from './display.js';
import { parseDuration } from './duration.js';
import { failed, nodeNow, TOKEN_HELP, withClient } from './on-drive.js';

/**
 * `stratus share`, `stratus unshare` and `stratus shares` (DESIGN §3, §9): shares of files and
 * folders on a mounted drive, by path. Each command finds the drive holding the path, asks that
 * drive's server as that drive's user, and prints one line of what it did (or of why not).
 */

const ROLES: Role[] = ['viewer', 'editor', 'owner'];


/** The drive-relative path of what a command acts on, quoted for messages ("/" for the root). */
function label(at: DrivePath): string {
  return `"${at.names.length ? at.names.join('/') : '/'}"`;
}

/** Runs `fn` with the node `given` names on its drive, through a client of that drive's user. */
async function withNodeAt<T>(given: string, token: string | undefined, fn: (client: StratusClient, node: NodeInfo, at: DrivePath) => Promise<T>): Promise<T> {
  const at = await locateOnDrive(given);
  return withClient(at.drive, token, async (client) => fn(client, await nodeNow(client, at), at));
}

/** `s` as one shell word. */
function shellWord(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function when(iso: string | null, now = Date.now()): string {
  if (iso === null) return 'never';
  const t = `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
  return Date.parse(iso) <= now ? `expired ${t}` : t;
}

function expiryNote(iso: string | null): string {
  return iso === null ? 'no expiry' : `until ${when(iso)}`;
}

export function shareCommand(): Command {
  return new Command('share')
    .description('share a file or folder of your drive with a user (or change their role), or make a read-only link to open in a browser')
    .argument('<path>', 'a file or folder on a mounted Stratus drive')
    .argument('[user]', 'who to share it with (not with --link)')
    .addOption(new Option('--role <role>', 'what USER may do: viewer (read), editor (read and change), owner (also share and revoke)').choices(ROLES))
    .option('--link', 'make a link share (viewer) and print its URL')
    .option('--expires <duration>', 'end the share after this long: 30m, 12h, 7d (default: never; a role change without it clears the expiry)', parseDuration)
    .option('--token <token>', TOKEN_HELP)
    .addHelpText(
      'after',
      `
Examples:
  stratus share ~/Stratus/Photos bob --role editor
  stratus share ~/Stratus/Photos bob --role viewer --expires 7d   # changes bob's role
  stratus share ~/Stratus/Photos --link --expires 12h            # prints the URL

Sharing is for the owners of a file or folder; a folder inside a shared folder cannot be
shared on its own (share the outer one). Revoke with \`stratus unshare\`.`,
    )
    .action(async (given: string, user: string | undefined, opts: { role?: Role; link?: boolean; expires?: number; token?: string }) => {
      if (opts.link && user !== undefined) throw new Error('give USER or --link, not both');
      if (!opts.link && user === undefined) throw new Error('give the USER to share with (and --role), or --link');
      if (opts.link && opts.role !== undefined) throw new Error('a link share is always read-only (viewer): leave out --role');
      if (!opts.link && opts.role === undefined) throw new Error('give --role viewer, editor or owner');
      const expires_at = opts.expires === undefined ? undefined : Date.now() + opts.expires;
      await withNodeAt(given, opts.token, async (client, node, at) => {
        const what = label(at);
        if (opts.link) {
          let share: ShareInfo;
          try {
            share = await client.share(node.id, { link: true, ...(expires_at !== undefined && { expires_at }) });
          } catch (err) {
            throw failed(`make a link to ${what}`, at.drive, err);
          }
          process.stdout.write(`${at.drive.server.replace(/\/+$/, '')}${share.url ?? ''}\n`);
          process.stderr.write(`stratus: link to ${what} (read-only, ${expiryNote(share.expires_at)}); revoke it with: stratus unshare ${shellWord(given)} --link ${share.id}\n`);
          return;
        }
        const role = opts.role!;
        let before: ShareInfo | undefined;
        let share: ShareInfo;
        try {
          before = (await client.nodeShares(node.id)).shares.find((s) => s.user === user);
          share = await client.share(node.id, { user: user!, role, ...(expires_at !== undefined && { expires_at }) });
        } catch (err) {
          throw failed(`share ${what} with ${user}`, at.drive, err);
        }
        const done =
          before === undefined
            ? `shared ${what} with ${user} as ${share.role}`
            : before.role === share.role
              ? `${user} stays ${share.role} of ${what}`
              : `${user} is now ${share.role} of ${what} (was ${before.role})`;
        process.stdout.write(`${done}, ${expiryNote(share.expires_at)}\n`);
      });
    });
}

export function unshareCommand(): Command {
  return new Command('unshare')
    .description("stop sharing a file or folder: with a user, or revoke link shares (their URLs stop working)")
    .argument('<path>', 'a shared file or folder on a mounted Stratus drive')
    .argument('[user]', 'the user to stop sharing with')
    .option('--link <id>', 'revoke the link share with this id (`stratus shares` lists them)')
    .option('--all-links', 'revoke every link share of PATH')
    .option('--token <token>', TOKEN_HELP)
    .addHelpText(
      'after',
      `
Examples:
  stratus unshare ~/Stratus/Photos bob
  stratus unshare ~/Stratus/Photos --link 3kQ9xY2bTq0aLm7Z
  stratus unshare ~/Stratus/Photos --all-links

The folder disappears from the user's drives; nothing in it is deleted.`,
    )
    .action(async (given: string, user: string | undefined, opts: { link?: string; allLinks?: boolean; token?: string }) => {
      if ([user !== undefined, opts.link !== undefined, opts.allLinks === true].filter(Boolean).length !== 1) {
        throw new Error('give one of: USER, --link ID, --all-links');
      }
      await withNodeAt(given, opts.token, async (client, node, at) => {
        const what = label(at);
        const action = user !== undefined ? `stop sharing ${what} with ${user}` : `revoke link shares of ${what}`;
        try {
          const shares = (await client.nodeShares(node.id)).shares;
          if (user !== undefined) {
            const share = shares.find((s) => s.user === user);
            if (!share) throw new Error(`${what} is not shared with ${user}`);
            await client.unshare(node.id, share.id);
            process.stdout.write(`stopped sharing ${what} with ${user}\n`);
            return;
          }
          const links = shares.filter((s) => s.user === null && (opts.allLinks || s.id === opts.link));
          if (opts.link !== undefined && links.length === 0) throw new Error(`${what} has no link share ${opts.link}`);
          for (const link of links) await client.unshare(node.id, link.id);
          process.stdout.write(opts.link !== undefined ? `revoked link ${opts.link} of ${what}\n` : links.length ? `revoked ${links.length} link share(s) of ${what}\n` : `${what} has no link shares\n`);
        } catch (err) {
          if (err instanceof ApiError || (err as NodeJS.ErrnoException).code) throw failed(action, at.drive, err);
          throw err;
        }
      });
    });
}

/** A share by the caller, with the path of what is shared in the caller's own tree. */
export interface ShareByMe extends ShareInfo {
  path: string;
}

/** The path from the caller's root to each shared node of theirs (the share's name when it cannot be found). */
async function pathsOf(client: StratusClient, shares: ShareInfo[]): Promise<ShareByMe[]> {
  const nodes = new Map<string, Promise<NodeInfo>>();
  const node = (id: string) => {
    let n = nodes.get(id);
    if (!n) nodes.set(id, (n = client.node(id)));
    return n;
  };
  const pathOf = async (id: string): Promise<string> => {
    const names: string[] = [];
    for (let n = await node(id); n.parent_id !== null; n = await node(n.parent_id)) names.unshift(n.name);
    return names.join('/');
  };
  return Promise.all(shares.map(async (s) => ({ ...s, path: await pathOf(s.node_id).catch(() => s.name) })));
}


export function sharesCommand(): Command {
  return new Command('shares')
    .description('list what is shared with you and what you share (with whom or by link, role, expiry)')
    .argument('[path]', "a path on the drive whose account to list (default: the drive holding the current folder, else the only one mounted)")
    .option('--json', 'print {shared_with_me, shared_by_me} as JSON for scripts')
    .option('--token <token>', TOKEN_HELP)
    .action(async (given: string | undefined, opts: { json?: boolean; token?: string }) => {
      const drive = given === undefined ? await defaultDrive() : (await locateOnDrive(given)).drive;
      const client = await driveClient(drive, opts.token);
      try {
        let withMe: ShareInfo[];
        let byMe: ShareByMe[];
        try {
          const page = await client.shares();
          withMe = page.shared_with_me;
          byMe = await pathsOf(client, page.shared_by_me);
        } catch (err) {
          throw failed('list shares', drive, err);
        }
        if (opts.json) {
          process.stdout.write(`${JSON.stringify({ shared_with_me: withMe, shared_by_me: byMe }, null, 2)}\n`);
          return;
        }
        const now = Date.now();
        process.stdout.write(
          `Shared with me:\n${table(['NAME', 'OWNER', 'ROLE', 'EXPIRES'], withMe.map((s) => [s.name, s.owner, s.role, when(s.expires_at, now)]))}` +
            `Shared by me:\n${table(['PATH', 'WITH', 'ROLE', 'EXPIRES', 'ID'], byMe.map((s) => [s.path, s.user ?? 'link', s.role, when(s.expires_at, now), s.id]))}`,
        );
      } finally {
        await client.close();
      }
    });
}
