import crypto from 'node:crypto';
import type { Knex } from 'knex';

/**
 * Namespaces (DESIGN §3): the unit of ordering and sharing. Every user's root is one; a shared
 * folder becomes one. Each node records its namespace (`nodes.ns_id`, and `version_blocks.ns_id`
 * so block reads are authorized by namespace, looked up from the reader's side). The journal is
 * per namespace: `changes` rows are keyed (ns_id, seq), gap-free within a namespace, and keep the
 * node's state after the change. Shares grant a user (or a link) a role on a namespace's root; a
 * user's share appears in their tree at (mount_parent_id, mount_name).
 *
 * Existing data: each user's nodes go to the namespace of their root, and each namespace's journal
 * starts with one row per node in its current state, so a client starting from the beginning of a
 * namespace sees all of it. The old global journal goes; old cursors are answered with a full resync.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('namespaces', (t) => {
    t.increments('id').primary();
    t.string('public_id', 16).notNullable().unique();
    t.string('root_node_id', 36).notNullable().unique().references('id').inTable('nodes');
    t.integer('owner_id').notNullable().references('id').inTable('users');
    t.bigInteger('next_seq').notNullable().defaultTo(1);
    t.bigInteger('created_at').notNullable();
    t.index(['owner_id']);
  });
  const roots: Array<{ id: unknown; owner_id: unknown }> = await knex('nodes').whereNull('parent_id').select('id', 'owner_id');
  const now = Date.now();
  for (const root of roots) {
    await knex('namespaces').insert({ public_id: crypto.randomBytes(12).toString('base64url'), root_node_id: root.id, owner_id: root.owner_id, created_at: now });
  }

  // Plain ADD COLUMN on both engines: Knex's SQLite way of adding a foreign key rebuilds the table,
  // which the foreign keys of every row that points at a node refuse.
  await knex.raw('ALTER TABLE nodes ADD COLUMN ns_id integer REFERENCES namespaces (id)');
  await knex.raw('UPDATE nodes SET ns_id = (SELECT ns.id FROM namespaces ns WHERE ns.owner_id = nodes.owner_id)');
  await knex.schema.alterTable('nodes', (t) => {
    t.index(['ns_id']);
  });

  await knex.schema.alterTable('version_blocks', (t) => {
    t.integer('ns_id');
  });
  await knex.raw('UPDATE version_blocks SET ns_id = (SELECT n.ns_id FROM nodes n WHERE n.id = version_blocks.node_id)');
  await knex.schema.alterTable('version_blocks', (t) => {
    t.index(['ns_id', 'hash']);
  });

  await knex.schema.dropTable('changes');
  await knex.schema.createTable('changes', (t) => {
    t.integer('ns_id').notNullable().references('id').inTable('namespaces');
    t.bigInteger('seq').notNullable();
    t.string('node_id', 36).notNullable().references('id').inTable('nodes');
    t.string('action', 32).notNullable();
    // The node's state after the change (history and time travel read these).
    t.string('parent_id', 36);
    t.text('name').notNullable();
    t.integer('head_version').notNullable();
    t.bigInteger('deleted_at');
    t.bigInteger('at').notNullable();
    t.primary(['ns_id', 'seq']);
    t.index(['node_id']);
  });
  await knex.raw(
    `INSERT INTO changes (ns_id, seq, node_id, action, parent_id, name, head_version, deleted_at, at)
     SELECT ns_id, ROW_NUMBER() OVER (PARTITION BY ns_id ORDER BY created_at, id), id, 'migrate', parent_id, name, head_version, deleted_at, ?
     FROM nodes`,
    [now],
  );
  await knex.raw('UPDATE namespaces SET next_seq = 1 + (SELECT count(*) FROM changes c WHERE c.ns_id = namespaces.id)');

  // No share was ever made before this migration (the table had no API): it is made anew.
  await knex.schema.dropTable('shares');
  await knex.schema.createTable('shares', (t) => {
    t.increments('id').primary();
    t.string('public_id', 16).notNullable().unique();
    t.integer('ns_id').notNullable().references('id').inTable('namespaces');
    // Null for a link share.
    t.integer('grantee_id').references('id').inTable('users');
    t.string('role', 8).notNullable();
    t.integer('created_by').notNullable().references('id').inTable('users');
    t.bigInteger('created_at').notNullable();
    t.bigInteger('expires_at');
    t.string('link_token_hash', 64).unique();
    // Where the share shows in the grantee's tree (a folder of theirs, and a name in it).
    t.string('mount_parent_id', 36).references('id').inTable('nodes');
    t.text('mount_name');
    t.index(['grantee_id']);
  });
  await knex.raw('CREATE UNIQUE INDEX shares_one_grant ON shares (ns_id, grantee_id) WHERE grantee_id IS NOT NULL');
  if (knex.client.config.client === 'pg') await knex.raw('ALTER TABLE shares ALTER COLUMN mount_name TYPE text COLLATE "C"');

  // Keys only the servers know (one per purpose): cursors are signed with one, so a client cannot
  // forge a position in a namespace it never saw.
  await knex.schema.createTable('server_keys', (t) => {
    t.string('name', 32).primary();
    t.string('value', 128).notNullable();
  });
  await knex('server_keys').insert({ name: 'cursor', value: crypto.randomBytes(32).toString('hex') });
}

export async function down(): Promise<void> {
  throw new Error('migration 005_namespaces cannot be undone (the global journal it replaced is gone)');
}
