import type { Knex } from 'knex';

/**
 * A block whose stored bytes no longer hash to its id (bit rot, a truncated file, a file lost
 * from the store) is marked corrupt when a read finds it: downloads answer an error instead of
 * the wrong bytes, and `check` and commits treat it as missing, so the next client that holds the
 * right bytes uploads them again, which repairs it.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('blocks', (t) => {
    t.bigInteger('corrupt_at');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('blocks', (t) => {
    t.dropColumn('corrupt_at');
  });
}
