import type { Knex } from 'knex';

/**
 * The whole data model of DESIGN §3. Timestamps are integer milliseconds since the epoch on
 * both engines; manifests are JSON text. Runs unchanged on SQLite and PostgreSQL.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('users', (t) => {
    t.increments('id').primary();
    t.string('name', 64).notNullable().unique();
    t.bigInteger('created_at').notNullable();
  });

  await knex.schema.createTable('devices', (t) => {
    t.increments('id').primary();
    t.integer('user_id').notNullable().references('id').inTable('users');
    t.string('name', 128).notNullable();
    t.string('token_hash', 64).notNullable().unique();
    t.bigInteger('created_at').notNullable();
    t.bigInteger('last_seen_at');
    t.bigInteger('revoked_at');
    t.index(['user_id']);
  });

  await knex.schema.createTable('nodes', (t) => {
    t.string('id', 36).primary();
    t.integer('owner_id').notNullable().references('id').inTable('users');
    t.string('parent_id', 36).references('id').inTable('nodes');
    t.text('name').notNullable();
    t.string('kind', 4).notNullable();
    t.integer('head_version').notNullable().defaultTo(0);
    t.bigInteger('size').notNullable().defaultTo(0);
    t.bigInteger('mtime').notNullable();
    t.integer('mode').notNullable();
    t.bigInteger('deleted_at');
    t.bigInteger('created_at').notNullable();
    t.index(['parent_id']);
  });
  // Names sort and compare by bytes on both engines (SQLite's default), whatever the PostgreSQL
  // database's locale: keyset paging of children relies on one order.
  if (knex.client.config.client === 'pg') await knex.raw('ALTER TABLE nodes ALTER COLUMN name TYPE text COLLATE "C"');
  // (parent_id, name) is unique among live nodes; each user has exactly one root.
  await knex.raw('CREATE UNIQUE INDEX nodes_live_name ON nodes (parent_id, name) WHERE deleted_at IS NULL');
  await knex.raw('CREATE UNIQUE INDEX nodes_one_root ON nodes (owner_id) WHERE parent_id IS NULL');

  await knex.schema.createTable('versions', (t) => {
    t.string('node_id', 36).notNullable().references('id').inTable('nodes');
    t.integer('version').notNullable();
    t.text('manifest').notNullable();
    t.bigInteger('size').notNullable();
    t.bigInteger('mtime').notNullable();
    t.integer('device_id').references('id').inTable('devices');
    t.integer('base_version').notNullable();
    t.bigInteger('committed_at').notNullable();
    t.primary(['node_id', 'version']);
  });

  // Which blocks each version references, one row per distinct hash: answers "may this user
  // read block H" (invariant 4) and "is H still referenced" (GC, invariant 7) by index.
  await knex.schema.createTable('version_blocks', (t) => {
    t.string('node_id', 36).notNullable();
    t.integer('version').notNullable();
    t.string('hash', 64).notNullable();
    t.primary(['node_id', 'version', 'hash']);
    t.foreign(['node_id', 'version']).references(['node_id', 'version']).inTable('versions');
    t.index(['hash']);
  });

  await knex.schema.createTable('blocks', (t) => {
    t.string('hash', 64).primary();
    t.bigInteger('size').notNullable();
    t.bigInteger('created_at').notNullable();
  });

  // Who uploaded (proved possession of) each block: the other half of invariant 4.
  await knex.schema.createTable('block_owners', (t) => {
    t.integer('user_id').notNullable().references('id').inTable('users');
    t.string('hash', 64).notNullable().references('hash').inTable('blocks');
    t.bigInteger('created_at').notNullable();
    t.primary(['user_id', 'hash']);
    t.index(['hash']);
  });

  await knex.schema.createTable('changes', (t) => {
    t.bigIncrements('seq').primary();
    t.integer('owner_id').notNullable().references('id').inTable('users');
    t.string('node_id', 36).notNullable().references('id').inTable('nodes');
    t.string('action', 32).notNullable();
    t.bigInteger('at').notNullable();
    t.index(['owner_id', 'seq']);
  });

  await knex.schema.createTable('shares', (t) => {
    t.increments('id').primary();
    t.string('node_id', 36).notNullable().references('id').inTable('nodes');
    t.integer('grantee_id').notNullable().references('id').inTable('users');
    t.string('role', 8).notNullable();
    t.integer('created_by').notNullable().references('id').inTable('users');
    t.bigInteger('created_at').notNullable();
    t.bigInteger('expires_at');
    t.unique(['node_id', 'grantee_id']);
    t.index(['grantee_id']);
  });

  await knex.schema.createTable('audit', (t) => {
    t.bigIncrements('seq').primary();
    t.bigInteger('at').notNullable();
    t.integer('user_id');
    t.integer('device_id');
    t.string('action', 32).notNullable();
    t.string('node_id', 36);
    t.text('detail');
  });
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ['audit', 'shares', 'changes', 'block_owners', 'blocks', 'version_blocks', 'versions', 'nodes', 'devices', 'users']) {
    await knex.schema.dropTableIfExists(table);
  }
}
