import type { Knex } from 'knex';

/**
 * Trash as items, retention and block GC (DESIGN §3, invariant 7).
 *
 * - `nodes.trashed_with`: a node deleted shortly before the folder above it was deleted (what
 *   `rm -r` does: files first, the folder last) goes with that folder as one trash item; this
 *   names the item (restoring it brings the node back too). `nodes.deleted_by`: the device.
 * - `nodes.purged_at`: a purged node stays as a tombstone row (its name cleared, its versions and
 *   journal rows gone) so the journal can say it is gone to cursors older than the purge, and
 *   every row that points at a node stays valid.
 * - `blocks.state`: `present` (usable), `pending` (its bytes being published by an upload; not
 *   usable until the upload's record commits) or `deleting` (the GC is removing its bytes; an
 *   upload waits until the row is gone). `last_claimed_at`: the last upload or `check` that
 *   counted on it: the GC leaves a block claimed within its grace period alone.
 * - `job_leases`: one runner of a job at a time across backends.
 */
export async function up(knex: Knex): Promise<void> {
  // Plain ADD COLUMN on both engines (Knex's SQLite way rebuilds `nodes`, which the foreign keys refuse).
  await knex.raw('ALTER TABLE nodes ADD COLUMN trashed_with varchar(36)');
  await knex.raw('ALTER TABLE nodes ADD COLUMN deleted_by integer');
  await knex.raw('ALTER TABLE nodes ADD COLUMN purged_at bigint');
  await knex.raw('CREATE INDEX nodes_trashed_with ON nodes (trashed_with) WHERE trashed_with IS NOT NULL');
  await knex.raw('CREATE INDEX nodes_trash ON nodes (deleted_at) WHERE deleted_at IS NOT NULL AND purged_at IS NULL');
  await knex.raw("ALTER TABLE blocks ADD COLUMN state varchar(8) NOT NULL DEFAULT 'present'");
  await knex.raw('ALTER TABLE blocks ADD COLUMN last_claimed_at bigint');
  await knex.raw('ALTER TABLE blocks ADD COLUMN gc_at bigint');
  await knex('blocks').update({ last_claimed_at: knex.ref('created_at') });
  await knex.raw('CREATE INDEX blocks_claimed ON blocks (last_claimed_at)');
  await knex.raw('CREATE INDEX versions_committed ON versions (committed_at)');
  await knex.schema.createTable('job_leases', (t) => {
    t.string('name', 32).primary();
    t.string('holder', 64).notNullable();
    t.bigInteger('expires_at').notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('job_leases');
  for (const index of ['versions_committed', 'blocks_claimed', 'nodes_trash', 'nodes_trashed_with']) await knex.raw(`DROP INDEX ${index}`);
  for (const column of ['gc_at', 'last_claimed_at', 'state']) await knex.raw(`ALTER TABLE blocks DROP COLUMN ${column}`);
  for (const column of ['purged_at', 'deleted_by', 'trashed_with']) await knex.raw(`ALTER TABLE nodes DROP COLUMN ${column}`);
}
