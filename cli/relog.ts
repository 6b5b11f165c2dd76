import type { Level, Logger } from 'pino';

/** Fields of a pino line that the logger writing it again sets itself. */
const OWN_FIELDS = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'v']);

/**
 * Writes one line of a child process's log (`stratus serve --log-format json`, under `up`) to
 * `log` as the child's (`component: "server"`), at its level, with its fields: one log, one
 * format, on the terminal and in --log-file. A line that is not pino JSON (a crash of the child
 * before its logger existed) is logged as an error as it is. Returns the line's message.
 */
export function relogLine(log: Logger, line: string): string {
  let entry: Record<string, unknown> | undefined;
  try {
    const parsed: unknown = JSON.parse(line);
    if (parsed && typeof parsed === 'object' && typeof (parsed as { level?: unknown }).level === 'number') entry = parsed as Record<string, unknown>;
  } catch {
    entry = undefined;
  }
  if (!entry) {
    if (line.trim()) log.error({ component: 'server' }, line);
    return line;
  }
  const label = (log.levels.labels[entry.level as number] ?? 'info') as Level;
  const msg = typeof entry.msg === 'string' ? entry.msg : '';
  const fields: Record<string, unknown> = { component: 'server' };
  for (const [key, value] of Object.entries(entry)) if (!OWN_FIELDS.has(key)) fields[key] = value;
  fields.component = typeof entry.component === 'string' ? `server.${entry.component}` : 'server';
  if (typeof entry.pid === 'number') fields.server_pid = entry.pid;
  log[label](fields, msg);
  return msg;
}
