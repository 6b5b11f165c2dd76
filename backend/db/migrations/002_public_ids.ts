import crypto from 'node:crypto';
import type { Knex } from 'knex';

/**
 * Opaque public ids for users and devices. Their integer keys come from global sequences, so a
 * client that saw them could count other users' accounts and devices (device 3, 4, 5 of one user
 * tell how many others were made in between); replies carry these random ids instead and the
 * integers stay inside the server. Existing rows get theirs here.
 */
export async function up(knex: Knex): Promise<void> {
  for (const table of ['users', 'devices']) {
    await knex.schema.alterTable(table, (t) => {
      t.string('public_id', 16);
    });
    const rows: Array<{ id: unknown }> = await knex(table).select('id');
    for (const row of rows) await knex(table).where({ id: row.id }).update({ public_id: crypto.randomBytes(12).toString('base64url') });
    await knex.schema.alterTable(table, (t) => {
      t.unique(['public_id']);
    });
  }
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ['users', 'devices']) {
    await knex.schema.alterTable(table, (t) => {
      t.dropUnique(['public_id']);
      t.dropColumn('public_id');
    });
  }
}
