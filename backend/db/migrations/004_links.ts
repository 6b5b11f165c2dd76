import type { Knex } from 'knex';

/**
 * Symbolic links: a node of kind `link` holds its target path here, exactly as written (the
 * server never resolves it). Null for files and folders. `kind` (4 characters) already fits 'link'.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('nodes', (t) => {
    t.text('target');
  });
}

/** Refused while links exist: they would stay behind as nodes of kind `link` without a target. */
export async function down(knex: Knex): Promise<void> {
  const link = await knex('nodes').where({ kind: 'link' }).first('id');
  if (link) throw new Error('cannot undo migration 004_links while links exist (they would lose their targets)');
  // Plain DROP COLUMN on both engines: Knex's SQLite way rebuilds the table, which the foreign
  // keys of every row that points at a node refuse.
  await knex.raw('ALTER TABLE nodes DROP COLUMN target');
}
