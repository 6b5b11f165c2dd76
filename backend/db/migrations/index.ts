import type { Knex } from 'knex';
import * as init from './001_init.js';
import * as publicIds from './002_public_ids.js';
import * as blockIntegrity from './003_block_integrity.js';
import * as links from './004_links.js';
import * as namespaces from './005_namespaces.js';
import * as trashGc from './006_trash_gc.js';
import * as history from './007_history.js';

/**
 * Migrations listed in code rather than scanned from a folder, so the same set runs from the
 * TypeScript sources (tests) and the compiled output (the CLI).
 */
const migrations: Record<string, Knex.Migration> = {
  '001_init': init,
  '002_public_ids': publicIds,
  '003_block_integrity': blockIntegrity,
  '004_links': links,
  '005_namespaces': namespaces,
  '006_trash_gc': trashGc,
  '007_history': history,
};

export const migrationSource: Knex.MigrationSource<string> = {
  async getMigrations() {
    return Object.keys(migrations).sort();
  },
  getMigrationName(name) {
    return name;
  },
  async getMigration(name) {
    const migration = migrations[name];
    if (!migration) throw new Error(`unknown migration ${name}`);
    return migration;
  },
};
