/**
 * Project test runner: `node dist/scripts/run-tests.js [tap args...]`.
 *
 * Starts a throwaway PostgreSQL (scripts/test-postgres.ts), exports its url as
 * STRATUS_TEST_PG_URL, runs tap from the project root with the given args and
 * exits with tap's exit code. PostgreSQL is always stopped, also when tap
 * fails or the runner gets SIGINT/SIGTERM (forwarded to tap first).
 *
 * STRATUS_TEST_PG=off: do not start PostgreSQL; tap runs without
 * STRATUS_TEST_PG_URL (PostgreSQL tests are expected to skip themselves).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startThrowawayPostgres, type ThrowawayPostgres } from './test-postgres.js';

const PREFIX = '[run-tests]';

/**
 * Project root: this file is either <root>/scripts/run-tests.ts (run from
 * source, e.g. with tsx) or <root>/dist/scripts/run-tests.js (compiled).
 */
function projectRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const parent = path.dirname(here);
  return path.basename(parent) === 'dist' ? path.dirname(parent) : parent;
}

function say(line: string): void {
  process.stderr.write(`${PREFIX} ${line}\n`);
}

function signalExitCode(sig: NodeJS.Signals): number {
  const n = os.constants.signals[sig];
  return typeof n === 'number' ? 128 + n : 1;
}

function oneLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n')[0] ?? msg;
}

async function main(): Promise<void> {
  const root = projectRoot();
  const tapBin = path.join(root, 'node_modules', '.bin', 'tap');
  const tapArgs = process.argv.slice(2);

  let pg: ThrowawayPostgres | null = null;
  let tap: ChildProcess | null = null;
  let receivedSignal: NodeJS.Signals | null = null;
  let finishing = false;

  // Stop PostgreSQL (once) and exit.
  const finish = async (code: number): Promise<never> => {
    if (!finishing) {
      finishing = true;
      if (pg) {
        try {
          await pg.stop();
        } catch (err) {
          say(`warning: stopping PostgreSQL failed: ${oneLine(err)}`);
        }
      }
      process.exit(code);
    }
    // A second caller just waits for the first one to exit the process.
    return new Promise<never>(() => {});
  };

  const onSignal = (sig: NodeJS.Signals): void => {
    if (receivedSignal) {
      // Second signal: stop waiting politely for tap.
      if (tap && tap.exitCode === null && tap.signalCode === null) tap.kill('SIGKILL');
      return;
    }
    receivedSignal = sig;
    if (tap && tap.exitCode === null && tap.signalCode === null) {
      say(`${sig}: forwarding to tap`);
      tap.kill(sig);
      // tap's 'exit' handler stops PostgreSQL and exits. Give tap a bounded time.
      setTimeout(() => {
        if (tap && tap.exitCode === null && tap.signalCode === null) {
          say('tap did not exit after 15 s, killing it');
          tap.kill('SIGKILL');
        }
      }, 15_000).unref();
    } else if (!tap) {
      // Still starting PostgreSQL: main() notices receivedSignal once the start
      // settles; nothing to forward yet.
      say(`${sig}: aborting`);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  if (!existsSync(tapBin)) {
    say(`error: ${tapBin} not found; run npm ci first`);
    process.exit(1);
  }

  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env['STRATUS_TEST_PG_URL'];

  if ((process.env['STRATUS_TEST_PG'] ?? '').toLowerCase() === 'off') {
    say('warning: STRATUS_TEST_PG=off, running tests without PostgreSQL (STRATUS_TEST_PG_URL unset)');
  } else {
    const t0 = performance.now();
    try {
      pg = await startThrowawayPostgres();
    } catch (err) {
      say(`error: cannot start PostgreSQL for the tests: ${oneLine(err)} (set STRATUS_TEST_PG=off to run without it)`);
      process.exit(1);
    }
    env['STRATUS_TEST_PG_URL'] = pg.url;
    if (!receivedSignal) say(`PostgreSQL ready at ${pg.url} (${Math.round(performance.now() - t0)} ms)`);
  }

  if (receivedSignal) return finish(signalExitCode(receivedSignal));

  tap = spawn(tapBin, tapArgs, { cwd: root, env, stdio: 'inherit' });

  tap.once('error', (err) => {
    say(`error: cannot run tap: ${oneLine(err)}`);
    void finish(1);
  });
  tap.once('exit', (code, signal) => {
    let exitCode: number;
    if (receivedSignal) exitCode = signalExitCode(receivedSignal);
    else if (code !== null) exitCode = code;
    else if (signal) exitCode = signalExitCode(signal);
    else exitCode = 1;
    void finish(exitCode);
  });
}

main().catch((err: unknown) => {
  say(`error: ${oneLine(err)}`);
  process.exit(1);
});
