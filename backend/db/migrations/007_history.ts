import type { Knex } from 'knex';

/**
 * History (GET /v1/history, DESIGN §5): "the children of folder P at time T" reads the journal's
 * states by node and time. `changes_parent_at` finds the nodes that were ever in P up to T;
 * `changes_node_at` finds each one's latest state at T. A folder's past children page by name
 * compared by bytes, as live children do: on PostgreSQL the journal's names take the "C"
 * collation as `nodes.name` has (001_init), whatever the database's locale.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw('CREATE INDEX changes_parent_at ON changes (parent_id, at)');
  await knex.raw('CREATE INDEX changes_node_at ON changes (node_id, at)');
  if (knex.client.config.client === 'pg') await knex.raw('ALTER TABLE changes ALTER COLUMN name TYPE text COLLATE "C"');
}

export async function down(knex: Knex): Promise<void> {
  if (knex.client.config.client === 'pg') await knex.raw('ALTER TABLE changes ALTER COLUMN name TYPE text COLLATE "default"');
  for (const index of ['changes_node_at', 'changes_parent_at']) await knex.raw(`DROP INDEX ${index}`);
}
