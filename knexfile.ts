import { knexConfig } from './backend/db/connect.js';

/**
 * For the knex CLI (`npx knex --knexfile dist/knexfile.js migrate:status`): the same
 * configuration `stratus serve` uses. STRATUS_DB selects PostgreSQL; STRATUS_DATA the data folder.
 */
export default knexConfig(process.env.STRATUS_DB, process.env.STRATUS_DATA ?? './stratus-data');
