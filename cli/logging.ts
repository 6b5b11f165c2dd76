import { mkdirSync, openSync, writeSync } from 'node:fs';
import path from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { pino, type DestinationStream, type Level, type Logger } from 'pino';
import pinoPretty from 'pino-pretty';

/**
 * The log of `serve`, `mount` and `up` (DESIGN §11): pino, with levels; on stderr as a person reads
 * it, and with `--log-file PATH` also every line as JSON (for journald-less hosts, log shippers,
 * `jq`). On stderr: `pretty` (time, colored level) when stderr is a terminal, else the one-line
 * `stratus: …` messages scripts and tests have always read (`auto`); or `json` lines (what `up` asks
 * of its embedded server, to show its lines as its own). Lines are written synchronously: a line
 * logged just before the process exits is never lost, and there are few (failures, start, stop).
 */

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevelName = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ['auto', 'pretty', 'text', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export interface LogSettings {
  level: LogLevelName;
  /** JSON lines appended here too. */
  file?: string;
  /** How stderr shows the lines. */
  format: LogFormat;
}

export function parseLogLevel(value: string): LogLevelName {
  const level = value.trim().toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new InvalidArgumentError(`not a log level: "${value}" (one of ${LOG_LEVELS.join(', ')})`);
  return level as LogLevelName;
}

export function parseLogFormat(value: string): LogFormat {
  const format = value.trim().toLowerCase();
  if (!(LOG_FORMATS as readonly string[]).includes(format)) throw new InvalidArgumentError(`not a log format: "${value}" (one of ${LOG_FORMATS.join(', ')})`);
  return format as LogFormat;
}

/** Adds --log-level, --log-file and --log-format to a command that runs (serve, mount, up). */
export function withLogOptions(cmd: Command): Command {
  return cmd
    .option('--log-level <level>', `least important lines logged: ${LOG_LEVELS.join(', ')}`, parseLogLevel, 'info')
    .option('--log-file <path>', 'also write every line as JSON to this file (appended; created mode 600)')
    .option('--log-format <format>', 'how stderr shows the log: pretty (a terminal), text (one `stratus: …` line each), json; auto = pretty on a terminal, else text', parseLogFormat, 'auto');
}

/** The settings of the flags withLogOptions added. */
export function logSettings(opts: { logLevel?: LogLevelName; logFile?: string; logFormat?: LogFormat }): LogSettings {
  return { level: opts.logLevel ?? 'info', file: opts.logFile, format: opts.logFormat ?? 'auto' };
}

/** A line of pino's JSON as stderr shows it in `text`: `stratus: MESSAGE`, an error's message after it. */
export function textLine(json: string): string {
  let entry: { msg?: unknown; err?: { message?: unknown } };
  try {
    entry = JSON.parse(json) as typeof entry;
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`;
  }
  const msg = typeof entry.msg === 'string' ? entry.msg : '';
  const err = typeof entry.err?.message === 'string' && !msg.includes(entry.err.message) ? entry.err.message : '';
  return `stratus: ${msg}${msg && err ? ': ' : ''}${err}\n`;
}

/** A synchronous destination that writes each line as `format` makes it. */
function lineDestination(write: (text: string) => void, format: (line: string) => string): DestinationStream {
  return { write: (line: string) => write(format(line)) };
}

function stderrDestination(format: LogFormat): DestinationStream {
  const toStderr = (text: string) => {
    try {
      process.stderr.write(text);
    } catch {
      // stderr gone (its reader died): the log file, if any, still gets the line.
    }
  };
  const shown = format === 'auto' ? (process.stderr.isTTY ? 'pretty' : 'text') : format;
  if (shown === 'json') return lineDestination(toStderr, (line) => line);
  if (shown === 'text') return lineDestination(toStderr, textLine);
  const pretty = pinoPretty.prettyFactory({ colorize: pinoPretty.isColorSupported, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,component' });
  return lineDestination(toStderr, (line) => pretty(line));
}

/** The log file: JSON lines appended with one write each; the directory is made if missing. */
function fileDestination(file: string): { stream: DestinationStream } {
  let fd: number;
  try {
    mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    fd = openSync(file, 'a', 0o600);
  } catch (err) {
    throw new Error(`cannot write the log file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return {
    stream: {
      write: (line: string) => {
        try {
          writeSync(fd, line);
        } catch {
          // A full disk must not take the drive down with it: the line is lost, stderr still has it.
        }
      },
    },
  };
}

/** The process's logger, as the flags say. Fails with one line when the log file cannot be written. */
export function createLogger(settings: LogSettings): Logger {
  const level: Level = settings.level === 'silent' ? 'fatal' : settings.level;
  const streams = [{ level, stream: stderrDestination(settings.format) }];
  if (settings.file) streams.push({ level, stream: fileDestination(settings.file).stream });
  return pino({ level: settings.level, timestamp: pino.stdTimeFunctions.isoTime }, pino.multistream(streams));
}
