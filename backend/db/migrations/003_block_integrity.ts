import type { Knex } from 'knex';

/**
 * Block integrity, and block access by (user, hash) first.
 *
 * A block whose stored bytes no longer hash to its id (bit rot, a truncated file, a file lost
 * from the store) is marked corrupt when a read finds it: downloads answer an error instead of
 * the wrong bytes, and `check` and commits treat it as missing, so the next client that holds the
 * right bytes uploads them again, which repairs it.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('blocks', (t) => {
    t.bigInteger('corrupt_at');
  });
  // "Which of these blocks do this user's versions name" is answered by (owner, hash): looked up
  // from the user's side, its work does not depend on whether other users' versions name a block
  // (services/access.ts).
  await knex.schema.alterTable('version_blocks', (t) => {
    t.integer('owner_id');
  });
  await knex.raw('UPDATE version_blocks SET owner_id = (SELECT owner_id FROM nodes WHERE nodes.id = version_blocks.node_id)');
  await knex.schema.alterTable('version_blocks', (t) => {
    t.index(['owner_id', 'hash']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('version_blocks', (t) => {
    t.dropIndex(['owner_id', 'hash']);
    t.dropColumn('owner_id');
  });
  await knex.schema.alterTable('blocks', (t) => {
    t.dropColumn('corrupt_at');
  });
}
