import { inspect } from 'node:util';
import type { Knex } from 'knex';
import type { Logger } from 'pino';

/**
 * Knex's own messages (a connection the pool could not open, a deprecation…) through the server's
 * log, one line each: knex would print them with console.log — on stdout, where `stratus user add`
 * prints its token, and with the whole stack of an error that is expected (a database that is
 * down). The first line goes out as a warning; the full text only at debug level. Without a
 * logger (commands that are not servers), the first line goes to stderr as `stratus: …`.
 */
export function knexLog(log?: Logger): NonNullable<Knex.Config['log']> {
  const db = log?.child({ component: 'db' });
  const emit = (level: 'warn' | 'error', message: unknown) => {
    const text = typeof message === 'string' ? message : inspect(message, { depth: 3 });
    const first = text.split('\n', 1)[0]!.trim();
    if (db) {
      db[level](first);
      if (text.trim() !== first) db.debug(text);
    } else {
      process.stderr.write(`stratus: database: ${first}\n`);
    }
  };
  return {
    warn: (message: unknown) => emit('warn', message),
    error: (message: unknown) => emit('error', message),
    deprecate: (method: string, alternative: string) => db?.debug(`knex: ${method} is deprecated, use ${alternative}`),
    debug: (message: unknown) => db?.debug(typeof message === 'string' ? message : inspect(message, { depth: 3 })),
  };
}
