import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { prng } from './bigdata.js';

/**
 * File-system calls on a mount made by a child process, one at a time, each with a deadline.
 *
 * A call into a hung FUSE mount blocks whoever made it (in this process: a libuv threadpool
 * thread, and with four of them stuck every fs call of the test hangs). So the calls go to a child
 * process (test/helpers/fs-ops-child.ts) that makes them in order and says on stdout when each
 * starts and how it ended; a call still running `opTimeoutMs` after it started counts as
 * 'timeout' and the child is killed (SIGKILL; a child blocked in a request the mount already read
 * only dies once the mount answers or goes, and nobody waits for that). The child stops at its
 * first failed call; it can be started ahead of time and held back by a gate (node and tsx take a
 * few hundred ms to start). With `ackFile`, every call that returned success is appended to that file
 * (one JSON line, before the next call starts): the acknowledgement log of a crash test.
 */

export type FsOp =
  /** open(O_WRONLY|O_CREAT|O_TRUNC), write opBytes(seed, size), close: one step. */
  | { op: 'write'; path: string; size: number; seed: string }
  | { op: 'mkdir'; path: string }
  | { op: 'rename'; from: string; to: string }
  | { op: 'unlink'; path: string }
  | { op: 'rmdir'; path: string }
  | { op: 'chmod'; path: string; mode: number }
  /** utimes with times in milliseconds since 1970. */
  | { op: 'utimes'; path: string; atimeMs: number; mtimeMs: number }
  | { op: 'stat'; path: string }
  | { op: 'readdir'; path: string }
  /** Reads the whole file (fresh open); its value is the size and sha256 of what was read. */
  | { op: 'read'; path: string };

export interface StatValue {
  type: 'file' | 'dir' | 'link' | 'other';
  size: number;
  /** Permission bits only. */
  mode: number;
  mtimeMs: number;
}

/** stat: StatValue; readdir: the names, sorted; read: size and sha256 (hex). */
export type OpValue = StatValue | string[] | { size: number; sha256: string };

export interface OpResult {
  i: number;
  op: FsOp;
  /** 'ok', 'timeout' (killed), or the errno name the call failed with (ENOTCONN, EIO…). */
  outcome: string;
  /** How long the call took in the child (up to the kill for a timeout). */
  ms: number;
  value?: OpValue;
}

/** What a write op writes: `size` bytes of seed's stream; up to 256 bytes as base64 text, so treeOf/treeValue show them losslessly. */
export function opBytes(seed: string, size: number): Buffer {
  if (size > 256) return prng(seed)(size);
  return Buffer.from(prng(seed)(Math.ceil((size * 3) / 4) + 3).toString('base64').slice(0, size));
}

/** Where an op's path(s) point: the same op with every path joined onto `dir` (e.g. a mountpoint). */
export function under(dir: string, op: FsOp): FsOp {
  return op.op === 'rename' ? { ...op, from: path.join(dir, op.from), to: path.join(dir, op.to) } : { ...op, path: path.join(dir, op.path) };
}

const childScript = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fs-ops-child.ts');
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface OpsOptions {
  /** Each call must end this long after it started (default 30 s). */
  opTimeoutMs?: number;
  /** Append each acknowledged op (JSON line) to this file. */
  ackFile?: string;
  /** The child starts (node, tsx) at once but makes its first call only once this resolves (e.g. a mount being started). */
  gate?: Promise<unknown>;
  /** Told when call i starts (the child is about to make it). */
  onStart?: (i: number) => void;
  /** Told each result as it arrives (the call has returned). */
  onResult?: (r: OpResult) => void;
}

export interface OpsRun {
  child: ChildProcess;
  /** Results so far, in order. */
  results: OpResult[];
  /** Every result, once the child is done: exited (all ops made, or stopped at a failure) or killed on a timeout. */
  done: Promise<OpResult[]>;
}

/** Starts a child that makes `ops` (absolute paths) in order; the test's teardown kills it if still running. */
export function startOps(t: Teardown, ops: FsOp[], opts: OpsOptions = {}): OpsRun {
  const timeoutMs = opts.opTimeoutMs ?? 30_000;
  const args = ['--import', 'tsx', childScript, JSON.stringify(ops), ...(opts.ackFile ? [opts.ackFile] : [])];
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
  const kill = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  t.teardown(kill);
  child.stdin!.on('error', () => undefined);
  // The child reads one line, then goes; a gate that fails kills it instead.
  Promise.resolve(opts.gate).then(() => child.stdin!.end('go\n'), kill);
  const results: OpResult[] = [];
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const done = new Promise<OpResult[]>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    let started: { i: number; at: number } | undefined;
    let finished = false;
    const finish = (err?: Error) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(results);
    };
    let buffered = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (finished) continue;
        const msg = JSON.parse(line) as { start: number } | Omit<OpResult, 'op'>;
        if ('start' in msg) {
          started = { i: msg.start, at: Date.now() };
          clearTimeout(timer);
          timer = setTimeout(() => {
            results.push({ i: msg.start, op: ops[msg.start]!, outcome: 'timeout', ms: Date.now() - started!.at });
            opts.onResult?.(results.at(-1)!);
            kill();
            finish();
          }, timeoutMs);
          opts.onStart?.(msg.start);
        } else {
          clearTimeout(timer);
          started = undefined;
          results.push({ ...msg, op: ops[msg.i]! });
          opts.onResult?.(results.at(-1)!);
        }
      }
    });
    // Not started (tsx compiling, the gate) in a long while: say so rather than wait for ever.
    timer = setTimeout(() => {
      kill();
      finish(new Error(`the fs-ops child did not start in 60 s: ${stderr}`));
    }, 60_000);
    child.once('close', (code, signal) => {
      if (started) return finish(new Error(`the fs-ops child died (${code ?? signal}) during op ${started.i}: ${stderr}`));
      const failed = results.some((r) => r.outcome !== 'ok');
      if (code !== 0 && !failed) return finish(new Error(`the fs-ops child exited (${code ?? signal}): ${stderr}`));
      finish();
    });
  });
  return { child, results, done };
}

/** One call in its own child: its result, 'timeout' if it has not returned within `timeoutMs`. */
export async function fsOp(t: Teardown, op: FsOp, timeoutMs: number): Promise<OpResult> {
  const [r] = await startOps(t, [op], { opTimeoutMs: timeoutMs }).done;
  return r!;
}
