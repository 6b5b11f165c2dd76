#!/usr/bin/env node
import { spawn, type ChildProcess } from 'node:child_process';
import { watch } from 'node:fs';
import { mkdir, open, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { helperArgs, HelperUsageError } from './mount-helper-args.js';

/**
 * `mount.fuse.stratus`: the mount helper mount(8) runs for `mount -t fuse.stratus SERVER DIR -o …`
 * and fstab lines of type fuse.stratus (installed on PATH by `npm install -g`; linked as
 * /sbin/mount.fuse.stratus, see the README). mount(8) expects it to return once the file system
 * is mounted, so it starts `stratus mount` in the background (its own session, output appended to
 * a log file), waits until the drive says it is ready, and exits 0; if the drive fails first, it
 * repeats the drive's one line and exits 1. The options are translated by mount-helper-args.ts.
 */

const main = fileURLToPath(new URL('./main.js', import.meta.url));
/** How long a drive may take to mount (it fetches the root from the server first). */
const READY_MS = 120_000;

const say = (msg: string) => process.stderr.write(`mount.fuse.stratus: ${msg}\n`);

/** `~/.local/state/stratus/mount-home_me_Stratus.log` ($XDG_STATE_HOME when set). */
function logFileFor(mountpoint: string): string {
  const state = process.env.XDG_STATE_HOME && path.isAbsolute(process.env.XDG_STATE_HOME) ? process.env.XDG_STATE_HOME : path.join(homedir(), '.local', 'state');
  return path.join(state, 'stratus', `mount-${mountpoint.replace(/^\/+/, '').replace(/[^A-Za-z0-9._-]/g, '_') || 'root'}.log`);
}

interface Outcome {
  ready: boolean;
  /** What the drive wrote to its log since it started. */
  output: string;
  why?: string;
}

/** Resolves once the drive's log says it is ready, or it exited, or READY_MS passed (then it is stopped). */
function whenReady(log: string, from: number, child: ChildProcess): Promise<Outcome> {
  return new Promise((resolve) => {
    let done = false;
    const output = async () => (await readFile(log)).subarray(from).toString('utf8');
    const finish = async (outcome: (text: string) => Outcome | undefined) => {
      if (done) return;
      const result = outcome(await output());
      if (!result || done) return;
      done = true;
      watcher.close();
      clearTimeout(timer);
      resolve(result);
    };
    const ready = (text: string) => (/drive ready at /.test(text) ? { ready: true, output: text } : undefined);
    const watcher = watch(log, () => void finish(ready));
    child.once('exit', (code, signal) => void finish((text) => ready(text) ?? { ready: false, output: text, why: `stratus mount exited (${code ?? signal})` }));
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      void finish((text) => ({ ready: false, output: text, why: `the drive was not ready after ${READY_MS / 1000} s` }));
    }, READY_MS);
    void finish(ready);
  });
}

async function run(): Promise<number> {
  const helper = helperArgs(process.argv.slice(2));
  const mountpoint = path.resolve(helper.mountpoint);
  const log = logFileFor(mountpoint);
  const shown = `stratus mount ${helper.args.join(' ')}${helper.env.STRATUS_TOKEN ? ' (token from -o token, passed in the environment)' : ''}`;
  if (helper.verbose || helper.fake) say(`${helper.fake ? 'would run' : 'running'}: ${shown}; output in ${log}`);
  if (helper.fake) return 0;
  await mkdir(path.dirname(log), { recursive: true, mode: 0o700 });
  const file = await open(log, 'a', 0o600);
  const from = (await file.stat()).size;
  let child: ChildProcess;
  try {
    // Its own session: it outlives mount(8) and the terminal; its output goes to the log, not to a pipe that closes.
    child = spawn(process.execPath, [main, 'mount', ...helper.args.slice(0, 1).map((p) => path.resolve(p)), ...helper.args.slice(1)], {
      detached: true,
      stdio: ['ignore', file.fd, file.fd],
      env: { ...process.env, ...helper.env },
    });
  } finally {
    await file.close();
  }
  const outcome = await whenReady(log, from, child);
  if (outcome.ready) {
    child.unref();
    if (helper.verbose) say(`mounted ${mountpoint} (pid ${child.pid}; stop it with \`stratus unmount ${mountpoint}\`)`);
    return 0;
  }
  const lines = outcome.output.split('\n').filter((l) => l.trim());
  const last = [...lines].reverse().find((l) => l.startsWith('stratus: ')) ?? lines.at(-1);
  process.stderr.write(`${last ?? `mount.fuse.stratus: ${outcome.why}`}\n`);
  if (helper.verbose) say(`${outcome.why}; see ${log}`);
  return 1;
}

run().then(
  (code) => process.exit(code),
  (err: unknown) => {
    say(err instanceof HelperUsageError ? err.message : (err as Error).message);
    process.exit(1);
  },
);
