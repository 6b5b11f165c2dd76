import { bin, run } from './drive.js';

/** What a `stratus` command did: its exit code and output. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * `stratus ARGS` as a user runs it: the compiled CLI as a separate process. STRATUS_TOKEN is not
 * passed on unless `env` gives it (commands on a drive then use the drive's own token).
 */
export async function stratusCli(args: string[], opts: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env };
  if (!opts.env?.STRATUS_TOKEN) delete env.STRATUS_TOKEN;
  return run(process.execPath, [bin, ...args], { cwd: opts.cwd, env, timeout: opts.timeoutMs ?? 60_000 }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

/** The subset of tap's Test `refused` uses. */
interface Asserts {
  not(found: unknown, notWanted: unknown, message: string): unknown;
  match(found: unknown, pattern: RegExp, message: string): unknown;
  equal(found: unknown, wanted: unknown, message: string): unknown;
}

/** A refusal as the CLI must make it: one line on stderr saying why, nothing on stdout, a non-zero exit. */
export function refused(t: Asserts, r: CliResult, line: RegExp, what: string): void {
  t.not(r.code, 0, `${what}: exit code ≠ 0`);
  t.match(r.stderr, /^stratus: [^\n]+\n$/, `${what}: one line on stderr`);
  t.match(r.stderr, line, `${what}: says why`);
  t.equal(r.stdout, '', `${what}: nothing on stdout`);
}
