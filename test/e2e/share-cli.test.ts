import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { parseDuration } from '../../cli/duration.js';
import type { ShareInfo } from '../../protocol/types.js';
import { refused, stratusCli } from '../helpers/cli-run.js';
import { eventually, mountDrive, remoteNode, startServerProcess, tempDir } from '../helpers/drive.js';

/*
 * `stratus share`, `stratus unshare` and `stratus shares` as a user runs them (the compiled CLI,
 * as separate processes) against real FUSE drives of two users on a real `stratus serve`: the
 * path on a drive is found among the running drives, resolved to the server's node by name
 * (also through a grantee's share entry), acted on as the drive's user (with the token the drive
 * left for the CLI), and every refusal is one line on stderr with a non-zero exit. What each
 * command did is checked through the API, not only through what it printed.
 */

// A runtime folder of our own: other tests' drives are not found here, nor ours there (inherited by every child).
const runtimeDir = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-share-run-'));
process.env.XDG_RUNTIME_DIR = runtimeDir;
t.teardown(() => fs.rm(runtimeDir, { recursive: true, force: true }));

/** `stratus ARGS` (no STRATUS_TOKEN unless given: the drive's own token). */
const stratus = (args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}) => stratusCli(args, opts);

const server = await startServerProcess(t);
const alice = await server.addUser('alice');
const bob = await server.addUser('bob');
await server.addUser('carol');
const A = await mountDrive(t, server, alice.token);
const B = await mountDrive(t, server, bob.token);

// Alice's folders, and a Docs of bob's own (so alice's Docs lands in bob's root as "Docs (from alice)").
await fs.mkdir(A.p('Photos'));
await fs.writeFile(A.p('Photos', 'cat.txt'), 'meow\n');
await fs.mkdir(A.p('Docs', 'inner'), { recursive: true });
await fs.mkdir(B.p('Docs'));
const onServer = (client: typeof alice.client, p: string) => eventually(`${p} on the server`, () => remoteNode(client, p), (n) => n !== undefined);
await onServer(alice.client, 'Photos/cat.txt');
const photos = (await remoteNode(alice.client, 'Photos'))!;
await onServer(alice.client, 'Docs/inner');
const docs = (await remoteNode(alice.client, 'Docs'))!;
await onServer(bob.client, 'Docs');

const sharesOf = async (id: string): Promise<ShareInfo[]> => (await alice.client.nodeShares(id)).shares;
const DAY = 86_400_000;

t.test('--expires takes a whole number of minutes, hours or days, and nothing else', async (t) => {
  t.equal(parseDuration('30m'), 30 * 60_000);
  t.equal(parseDuration('12h'), 12 * 3_600_000);
  t.equal(parseDuration('7d'), 7 * DAY);
  for (const bad of ['', '7', 'd', '0d', '07d', '7x', '7D', '1.5h', ' 7d', '7d ', '7 d', '-1d', '1d12h', '99999999d', '36526d']) {
    t.throws(() => parseDuration(bad), /not a duration/, `"${bad}" is refused`);
  }
});

t.test('share PATH USER --role grants the role and says so in one line; the grantee’s drive shows the folder; sharing again changes the role', async (t) => {
  const r = await stratus(['share', A.p('Photos'), 'bob', '--role', 'viewer']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'shared "Photos" with bob as viewer, no expiry\n', 'one line: what, with whom, role, expiry');
  t.match(await sharesOf(photos.id), [{ user: 'bob', role: 'viewer', expires_at: null }], 'the server holds the grant on the folder the path names');
  const cat = await eventually('Photos/cat.txt on bob’s drive', () => fs.readFile(B.p('Photos', 'cat.txt'), 'utf8'), (s) => s === 'meow\n');
  t.equal(cat, 'meow\n', 'bob’s drive shows Photos at his root, with its content');

  const before = Date.now();
  const again = await stratus(['share', A.p('Photos'), 'bob', '--role', 'editor', '--expires', '7d']);
  const after = Date.now();
  t.equal(again.code, 0, again.stderr);
  t.match(again.stdout, /^bob is now editor of "Photos" \(was viewer\), until \d{4}-\d\d-\d\d \d\d:\d\d UTC\n$/, 'says the role changed, and until when');
  const [grant] = await sharesOf(photos.id);
  t.equal(grant?.role, 'editor', 'the role changed on the server');
  const expires = Date.parse(grant?.expires_at ?? '');
  t.ok(expires >= before + 7 * DAY && expires <= after + 7 * DAY, `expires 7 days after the command ran (${grant?.expires_at})`);
});

t.test('a grantee’s path resolves through their share entry to the shared node; what they may not do is refused in one line and changes nothing', async (t) => {
  const r = await stratus(['share', A.p('Docs'), 'bob', '--role', 'owner']);
  t.equal(r.code, 0, r.stderr);
  await eventually('"Docs (from alice)" on bob’s drive', () => fs.readdir(B.mountpoint), (names) => names.includes('Docs (from alice)'));

  const entry = B.p('Docs (from alice)');
  const viaEntry = await stratus(['share', entry, 'carol', '--role', 'viewer']);
  t.equal(viaEntry.code, 0, viaEntry.stderr);
  t.equal(viaEntry.stdout, 'shared "Docs (from alice)" with carol as viewer, no expiry\n', 'bob (an owner of the share) shares it on');
  t.match(
    (await sharesOf(docs.id)).map((s) => s.user).sort(),
    ['bob', 'carol'],
    'the grant is on alice’s Docs: the entry "Docs (from alice)" resolved to the shared node’s id',
  );

  const snapshot = JSON.stringify([await sharesOf(docs.id), await sharesOf(photos.id)]);
  refused(t, await stratus(['share', path.join(entry, 'inner'), 'carol', '--role', 'viewer']), /^stratus: cannot share "Docs \(from alice\)\/inner" with carol: .*inside a shared folder/, 'a folder inside a shared folder (409 nested_share)');
  refused(t, await stratus(['share', B.p('Photos'), 'carol', '--role', 'viewer']), /^stratus: cannot share "Photos" with carol: only the owners of "Photos" can share it\n$/, 'an editor sharing on (403)');
  refused(t, await stratus(['unshare', B.p('Photos'), 'bob']), /^stratus: cannot stop sharing "Photos" with bob: only the owners/, 'an editor revoking (403)');
  refused(t, await stratus(['share', A.p('Photos'), 'nobody', '--role', 'viewer']), /^stratus: cannot share "Photos" with nobody: no user "nobody"\n$/, 'an unknown user (404)');
  t.equal(JSON.stringify([await sharesOf(docs.id), await sharesOf(photos.id)]), snapshot, 'no share changed');
});

t.test('share PATH --link prints the full URL; unshare --link ID and --all-links revoke links only', async (t) => {
  const before = Date.now();
  const first = await stratus(['share', A.p('Photos'), '--link', '--expires', '12h']);
  t.equal(first.code, 0, first.stderr);
  const url = new RegExp(`^${server.url.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}/s/[A-Za-z0-9_-]{20,}\\n$`);
  t.match(first.stdout, url, 'stdout: the server’s URL + /s/TOKEN, nothing else');
  const id = /--link (\S+)\n$/.exec(first.stderr)?.[1];
  t.ok(id, `stderr names the link’s id and how to revoke it: ${first.stderr.trim()}`);
  const second = await stratus(['share', A.p('Photos'), '--link']);
  t.match(second.stdout, url, 'a second link');
  t.not(second.stdout, first.stdout, 'with its own token');

  const links = (await sharesOf(photos.id)).filter((s) => s.user === null);
  t.equal(links.length, 2, 'the server holds two link shares');
  const timed = links.find((s) => s.id === id);
  t.equal(timed?.role, 'viewer', 'links are read-only');
  const expires = Date.parse(timed?.expires_at ?? '');
  t.ok(expires >= before + 12 * 3_600_000 && expires <= Date.now() + 12 * 3_600_000, 'the first expires in 12 h');

  const one = await stratus(['unshare', A.p('Photos'), '--link', id!]);
  t.equal(one.code, 0, one.stderr);
  t.equal(one.stdout, `revoked link ${id} of "Photos"\n`);
  t.same((await sharesOf(photos.id)).filter((s) => s.user === null).map((s) => s.id), links.filter((s) => s.id !== id).map((s) => s.id), 'only that link is gone');
  refused(t, await stratus(['unshare', A.p('Photos'), '--link', id!]), /^stratus: "Photos" has no link share \S+\n$/, 'the same link again');

  const all = await stratus(['unshare', A.p('Photos'), '--all-links']);
  t.equal(all.stdout, 'revoked 1 link share(s) of "Photos"\n');
  t.same((await sharesOf(photos.id)).map((s) => s.user), ['bob'], 'no links left; bob’s share untouched');
  t.equal((await stratus(['unshare', A.p('Photos'), '--all-links'])).stdout, '"Photos" has no link shares\n', '--all-links with none: says so, exit 0');
});

t.test('shares lists what is shared with me and by me (text and --json); without PATH it takes the drive of the current folder', async (t) => {
  const bobs = await stratus(['shares'], { cwd: B.p('Photos') });
  t.equal(bobs.code, 0, bobs.stderr);
  t.match(bobs.stdout, /^Shared with me:\n {2}NAME +OWNER +ROLE +EXPIRES\n/, 'bob’s: a section shared with me, with a header');
  t.match(bobs.stdout, /\n {2}Photos +alice +editor +\d{4}-\d\d-\d\d \d\d:\d\d UTC\n/, 'Photos from alice, editor, its expiry');
  t.match(bobs.stdout, /\n {2}Docs \(from alice\) +alice +owner +never\n/, 'his entry’s name for Docs');
  t.match(bobs.stdout, /\nShared by me:\n {2}\(none\)\n$/, 'bob shares nothing of his own');

  const alices = await stratus(['shares', A.mountpoint]);
  t.equal(alices.code, 0, alices.stderr);
  t.match(alices.stdout, /^Shared with me:\n {2}\(none\)\nShared by me:\n {2}PATH +WITH +ROLE +EXPIRES +ID\n/, 'alice’s: nothing with her; a section by her');
  t.match(alices.stdout, /\n {2}Docs +bob +owner +never +\S+\n/, 'Docs with bob');
  t.match(alices.stdout, /\n {2}Docs +carol +viewer +never +\S+\n/, 'Docs with carol (whom bob added), under alice’s own path of it');

  await stratus(['share', A.p('Photos'), '--link']);
  const json = await stratus(['shares', '--json', A.p('Photos', 'cat.txt')]);
  t.equal(json.code, 0, json.stderr);
  const parsed = JSON.parse(json.stdout) as { shared_with_me: ShareInfo[]; shared_by_me: Array<ShareInfo & { path: string }> };
  t.same(parsed.shared_with_me, [], '--json: shared_with_me');
  t.same(
    parsed.shared_by_me.map((s) => `${s.path} ${s.user ?? '(link)'} ${s.role}`).sort(),
    ['Docs bob owner', 'Docs carol viewer', 'Photos (link) viewer', 'Photos bob editor'],
    '--json: shared_by_me, each with the path in the owner’s tree (null user: a link)',
  );
  await stratus(['unshare', A.p('Photos'), '--all-links']);

  const elsewhere = await tempDir(t, 'share-cwd');
  refused(t, await stratus(['shares'], { cwd: elsewhere }), /^stratus: several Stratus drives are mounted \(.*\): give a path on one of them\n$/, 'no PATH, not on a drive, two drives');
});

t.test('unshare PATH USER revokes: the folder leaves the grantee’s drive; again: refused', async (t) => {
  const r = await stratus(['unshare', A.p('Photos'), 'bob']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'stopped sharing "Photos" with bob\n');
  t.same(await sharesOf(photos.id), [], 'no share of Photos is left');
  t.equal(await remoteNode(bob.client, 'Photos'), undefined, 'Photos is no longer in bob’s tree on the server');
  await eventually('Photos to leave bob’s drive', () => fs.readdir(B.mountpoint), (names) => !names.includes('Photos'));
  t.ok((await fs.readdir(A.p('Photos'))).includes('cat.txt'), 'alice’s folder is untouched');
  refused(t, await stratus(['unshare', A.p('Photos'), 'bob']), /^stratus: "Photos" is not shared with bob\n$/, 'again');
});

t.test('paths not on a drive, missing paths, bad durations, wrong tokens and bad combinations: one line, exit ≠ 0, nothing done', async (t) => {
  const before = JSON.stringify([await sharesOf(docs.id), await sharesOf(photos.id)]);
  const outside = await tempDir(t, 'not-a-drive');
  refused(t, await stratus(['share', outside, 'bob', '--role', 'viewer']), /^stratus: \S+ is not on a mounted Stratus drive/, 'a folder not on a drive');
  refused(t, await stratus(['share', A.p('no-such'), 'bob', '--role', 'viewer']), /^stratus: \S+no-such: no such file or folder\n$/, 'a path that does not exist');
  refused(t, await stratus(['share', A.p('Photos'), 'bob', '--role', 'viewer', '--token', bob.token]), /^stratus: the token from --token is bob's, but the drive at \S+ is alice's\n$/, 'another user’s token');
  refused(t, await stratus(['share', A.p('Photos'), 'bob', '--role', 'viewer'], { env: { STRATUS_TOKEN: 'stx_not-a-token' } }), /^stratus: the token from \$STRATUS_TOKEN is not accepted by http\S+\n$/, 'a token the server refuses');
  refused(t, await stratus(['share', A.p('Photos'), 'bob']), /give --role viewer, editor or owner/, 'USER without --role');
  refused(t, await stratus(['share', A.p('Photos'), 'bob', '--link']), /give USER or --link, not both/, 'USER and --link');
  refused(t, await stratus(['share', A.p('Photos'), '--link', '--role', 'editor']), /a link share is always read-only/, '--link with --role');
  refused(t, await stratus(['unshare', A.p('Photos'), 'bob', '--all-links']), /give one of: USER, --link ID, --all-links/, 'unshare USER and --all-links');

  const bad = await stratus(['share', A.p('Photos'), 'bob', '--role', 'viewer', '--expires', '7days']);
  t.not(bad.code, 0, 'a bad --expires: exit ≠ 0');
  t.match(bad.stderr, /not a duration: "7days" \(a whole number and m, h or d: 30m, 12h, 7d\)/, 'says what a duration looks like');
  t.equal(bad.stdout, '');
  t.equal(JSON.stringify([await sharesOf(docs.id), await sharesOf(photos.id)]), before, 'no share changed');

  for (const cmd of ['share', 'unshare', 'shares']) {
    const help = await stratus([cmd, '--help']);
    t.equal(help.code, 0, `${cmd} --help: exit 0`);
    t.match(help.stdout, new RegExp(`^Usage: stratus ${cmd} \\[options\\]`), `${cmd} --help: usage`);
  }
});
