import type { Logger } from 'pino';

/** How much a line of the drive's log matters. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/**
 * How the drive's parts log: one line (a failure names the file by its path on the drive, never
 * a node id, and carries no stack trace when the condition is expected), and its level (default
 * info). Plain callbacks keep the parts free of any logging library and easy to watch in tests.
 */
export type Say = (msg: string, level?: LogLevel) => void;

/** A Say writing to a pino logger (as `component`, when given: a field of the JSON line). */
export function sayTo(logger: Logger, component?: string): Say {
  const target = component ? logger.child({ component }) : logger;
  return (msg, level = 'info') => target[level](msg);
}
