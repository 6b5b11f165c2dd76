import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import knexFactory from 'knex';
import { pino } from 'pino';
import t from 'tap';
import { knexConfig } from '../../backend/db/connect.js';
import { startServer } from '../../backend/server.js';
import { hashToken } from '../../backend/services/accounts.js';
import { StratusClient } from '../../protocol/client.js';
import type { ChangeEntry } from '../../protocol/types.js';
import { createPgDatabase, stopOwnCluster, testEngines } from '../helpers/backend.js';

/**
 * Migration 005 (namespaces) on a database written by the server before it (schema 004, the
 * global journal): an existing drive keeps working after the upgrade. Its token still works, its
 * tree is as it was, its old numeric cursor is answered with a full resync (every node, each once,
 * in its current state — not an error), blocks of its versions stay readable to it alone, and new
 * changes journal per namespace from there on.
 */

t.teardown(stopOwnCluster);

const BEFORE = ['001_init', '002_public_ids', '003_block_integrity', '004_links'];

for (const engine of testEngines()) {
  t.test(`an existing database upgraded to namespaces keeps working [${engine}]`, async (t) => {
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-mig-'));
    t.teardown(() => fs.rm(dataDir, { recursive: true, force: true }));
    const pgDb = engine === 'postgres' ? await createPgDatabase() : undefined;
    const dbUrl = pgDb?.url ?? `sqlite:${path.join(dataDir, 'stratus.sqlite')}`;

    // The schema and rows the server wrote before namespaces.
    const old = knexFactory(knexConfig(dbUrl, dataDir));
    for (const name of BEFORE) await old.migrate.up({ name });
    const now = Date.now();
    const tokens: string[] = [];
    const ids: Record<string, string> = {};
    for (const [u, user] of ['pat', 'sam'].entries()) {
      const [userRow] = await old('users').insert({ name: user, public_id: crypto.randomBytes(12).toString('base64url'), created_at: now }).returning('id');
      const userId = Number(typeof userRow === 'object' ? (userRow as { id: unknown }).id : userRow);
      const token = `stx_${crypto.randomBytes(32).toString('base64url')}`;
      tokens.push(token);
      await old('devices').insert({ user_id: userId, public_id: crypto.randomBytes(12).toString('base64url'), name: 'laptop', token_hash: hashToken(token), created_at: now });
      const node = (name: string, parent: string | null, kind: string) => {
        const id = crypto.randomUUID();
        ids[`${user}/${name}`] = id;
        return { id, owner_id: userId, parent_id: parent, name, kind, head_version: 0, size: 0, mtime: now, mode: kind === 'dir' ? 0o755 : 0o644, created_at: now + u };
      };
      const root = node('', null, 'dir');
      const docs = node('Docs', root.id, 'dir');
      const file = { ...node('a.txt', docs.id, 'file'), head_version: 1, size: 5 };
      const trashed = { ...node('old.txt', root.id, 'file'), deleted_at: now };
      await old('nodes').insert([root, docs, file, trashed]);
      const hash = crypto.createHash('sha256').update(user).digest('hex');
      await old('blocks').insert({ hash, size: 5, created_at: now });
      await old('versions').insert({ node_id: file.id, version: 1, manifest: JSON.stringify([{ hash, size: 5 }]), size: 5, mtime: now, device_id: null, base_version: 0, committed_at: now });
      await old('version_blocks').insert({ node_id: file.id, version: 1, hash, owner_id: userId });
      ids[`${user}/hash`] = hash;
      for (const n of [root, docs, file, trashed]) await old('changes').insert({ owner_id: userId, node_id: n.id, action: 'node.create', at: now });
    }
    await old.destroy();

    const server = await startServer({ dataDir, listen: '127.0.0.1:0', dbUrl, blocksUrl: path.join(dataDir, 'blocks'), log: pino({ level: 'silent' }) });
    t.teardown(async () => {
      await server.close();
      await pgDb?.drop();
    });
    const pat = new StratusClient({ server: server.url, token: tokens[0]! });
    const sam = new StratusClient({ server: server.url, token: tokens[1]! });
    t.teardown(() => Promise.all([pat.close(), sam.close()]));

    const root = await pat.root();
    t.equal(root.id, ids['pat/'], 'the token works and the root is the same node');
    t.same((await pat.children(root.id)).children.map((c) => c.name), ['Docs'], 'the tree is as it was');

    // The drive's saved cursor from the global journal: a full resync, every node of pat's once, current state.
    const all: ChangeEntry[] = [];
    let page = await pat.changes('4');
    all.push(...page.changes);
    while (page.has_more) {
      page = await pat.changes(page.cursor);
      all.push(...page.changes);
    }
    t.same(all.map((c) => c.id).sort(), ['pat/', 'pat/Docs', 'pat/a.txt', 'pat/old.txt'].map((k) => ids[k]).sort(), 'an old cursor gets every node of pat\'s, once');
    t.type(all.find((c) => c.id === ids['pat/old.txt'])?.deleted_at, 'string', 'the trashed one as trashed');
    t.equal(page.cursor, (await pat.changesHead()).cursor, 'and ends at the head');

    t.same(await pat.checkBlocks([ids['pat/hash']!, ids['sam/hash']!]), { missing: [ids['sam/hash']] }, 'pat may use his version\'s block, not sam\'s');

    const made = await pat.create({ parent_id: root.id, name: 'new.txt', kind: 'file' });
    const after = await pat.changes(page.cursor);
    t.same(after.changes.map((c) => c.id), [made.id], 'new changes journal per namespace from the head on');
    t.same((await sam.changes(undefined)).changes.map((c) => c.id).sort(), ['sam/', 'sam/Docs', 'sam/a.txt', 'sam/old.txt'].map((k) => ids[k]).sort(), 'sam sees only his');
  });
}
