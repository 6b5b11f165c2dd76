import { randomInt } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import t, { type Test } from 'tap';
import { MiB, prng } from '../helpers/bigdata.js';
import type { StratusClient } from '../../protocol/client.js';
import { mountDrive, remoteTree, startServerProcess, tempDir, treeValue, type ServerProcess } from '../helpers/drive.js';
import { opBytes, startOps, under, type FsOp, type OpResult } from '../helpers/fs-ops.js';

/*
 * Nothing acknowledged is lost when the mount is killed (kill -9) at a random point of a burst of
 * mixed operations: small and MiB-sized files written (open+write+close), folders made a level
 * at a time (mkdir -p), files and folders renamed within and across folders, files renamed over
 * others, files overwritten and unlinked, empty folders removed. A child process makes the ops
 * one at a time and logs each one that returned (the acknowledgement log, outside the mount); the
 * mount is killed after a random number of acknowledgements (at once, or a few ms into the next
 * op). Mounted again on the same cache folder and mountpoint and stopped (SIGTERM drains), the
 * server must hold exactly the tree the acknowledged ops make, by path, type, size and sha256.
 * The one op that may have been in flight at the kill may or may not have happened (a file being
 * written: absent, or present with any content).
 *
 * Each trial has its own seed (printed): STRATUS_CRASH_SEED=N runs that trial alone (the ops and
 * the kill point again; the exact timing of the kill is the machine's). STRATUS_CRASH_TRIALS sets
 * how many trials (20). One server and user; a top folder, cache folder and mountpoint per trial.
 */

type Entry = { kind: 'dir' } | { kind: 'file'; size: number; seed: string };
/** Relative path → what is there (the user's root folder itself is not in it). */
type Model = Map<string, Entry>;

/** The model after one op (ops the generator makes always succeed on the model they were made for). */
function apply(model: Model, op: FsOp): Model {
  const next = new Map(model);
  switch (op.op) {
    case 'write':
      next.set(op.path, { kind: 'file', size: op.size, seed: op.seed });
      break;
    case 'mkdir':
      next.set(op.path, { kind: 'dir' });
      break;
    case 'unlink':
    case 'rmdir':
      next.delete(op.path);
      break;
    case 'rename':
      for (const [p, e] of model) {
        if (p !== op.from && !p.startsWith(`${op.from}/`)) continue;
        next.delete(p);
        next.set(op.to + p.slice(op.from.length), e);
      }
      break;
    default:
      throw new Error(`not an op of this test: ${op.op}`);
  }
  return next;
}

/** A uniform float in [0, 1) per call, from the seed alone. */
function random(seed: number): () => number {
  const next = prng(`crash-trial-${seed}`);
  return () => next(4).readUInt32LE(0) / 2 ** 32;
}

interface Plan {
  ops: FsOp[];
  /** Kill once this many ops are acknowledged (0: as the first starts)… */
  killAfter: number;
  /** …and this many ms later (0: at once). */
  delayMs: number;
}

/** 30–50 ops (paths relative to the mount), mostly small files, 0–2 of 1–4 MiB; and where to kill. */
function plan(seed: number): Plan {
  const rand = random(seed);
  const int = (n: number) => Math.floor(rand() * n);
  const pick = <T>(xs: T[]): T => xs[int(xs.length)]!;
  const count = 30 + int(21);
  const bigAt = new Set(Array.from({ length: int(3) }, () => int(count)));
  let model: Model = new Map();
  let names = 0;
  const ops: FsOp[] = [];
  const join = (dir: string, name: string) => (dir ? `${dir}/${name}` : name);
  const smallSize = () => {
    const r = rand();
    return r < 0.1 ? 0 : r < 0.7 ? 1 + int(256) : 257 + int(48 * 1024);
  };
  while (ops.length < count) {
    const entries = [...model];
    const files = entries.filter(([, e]) => e.kind === 'file').map(([p]) => p);
    const dirs = entries.filter(([, e]) => e.kind === 'dir').map(([p]) => p);
    const depth = (p: string) => (p ? p.split('/').length : 0);
    const empty = dirs.filter((d) => !entries.some(([p]) => p.startsWith(`${d}/`)));
    const name = (prefix: string, ext = '') => `${prefix}${names++}${ext}`;
    const newFile = (size: number): FsOp => ({ op: 'write', path: join(pick(['', ...dirs]), name('f', '.bin')), size, seed: `${seed}-${names}` });
    let step: FsOp[] | undefined;
    const r = rand();
    if (bigAt.has(ops.length)) step = [newFile(MiB + int(3 * MiB))];
    else if (r < 0.3) step = [newFile(smallSize())];
    else if (r < 0.4) {
      if (files.length) step = [{ op: 'write', path: pick(files), size: smallSize(), seed: `${seed}-${names++}` }];
    } else if (r < 0.52) {
      // mkdir -p of 1–3 levels: one mkdir per level, each acknowledged.
      let dir = pick(['', ...dirs.filter((d) => depth(d) < 3)]);
      step = [];
      for (let levels = 1 + int(3); levels > 0; levels--) step.push({ op: 'mkdir', path: (dir = join(dir, name('d'))) });
    } else if (r < 0.6) {
      if (files.length) {
        const from = pick(files);
        step = [{ op: 'rename', from, to: join(path.posix.dirname(from).replace(/^\.$/, ''), name('r', '.bin')) }];
      }
    } else if (r < 0.68) {
      if (files.length && dirs.length) {
        const from = pick(files);
        const to = pick(['', ...dirs].filter((d) => d !== path.posix.dirname(from).replace(/^\.$/, '')));
        step = [{ op: 'rename', from, to: join(to, name('m', '.bin')) }];
      }
    } else if (r < 0.75) {
      if (files.length >= 2) {
        const from = pick(files);
        step = [{ op: 'rename', from, to: pick(files.filter((f) => f !== from)) }];
      }
    } else if (r < 0.81) {
      if (dirs.length) {
        const from = pick(dirs);
        const into = ['', ...dirs].filter((d) => d !== from && !d.startsWith(`${from}/`));
        step = [{ op: 'rename', from, to: join(pick(into), name('rd')) }];
      }
    } else if (r < 0.91) {
      if (files.length) step = [{ op: 'unlink', path: pick(files) }];
    } else if (r < 0.96) {
      if (empty.length) step = [{ op: 'rmdir', path: pick(empty) }];
    }
    for (const op of step ?? [newFile(smallSize())]) {
      ops.push(op);
      model = apply(model, op);
    }
  }
  return { ops, killAfter: int(ops.length + 1), delayMs: rand() < 0.5 ? 0 : 1 + int(30) };
}

/** What a mount (treeOf) or remoteTree shows for a model; '*' for a file whose content is unknown. */
function treeOfModel(model: Model, unknown?: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [p, e] of model) {
    if (e.kind === 'dir') out[`${p}/`] = '<dir>';
    else out[p] = p === unknown ? '*' : treeValue(opBytes(e.seed, e.size));
  }
  return out;
}

/** How `found` differs from `wanted` ('*' in wanted matches any file), one line per path; empty when it matches. */
function differences(found: Record<string, string>, wanted: Record<string, string>): string[] {
  const short = (v: string | undefined) => (v === undefined ? 'nothing' : v.length > 80 ? `${JSON.stringify(v.slice(0, 60))}… (${v.length} chars)` : JSON.stringify(v));
  const out: string[] = [];
  for (const p of new Set([...Object.keys(found), ...Object.keys(wanted)])) {
    const f = found[p];
    const w = wanted[p];
    if (f === w || (w === '*' && f !== undefined && !p.endsWith('/'))) continue;
    out.push(`${p}: server has ${short(f)}, expected ${w === '*' ? 'a file' : short(w)}`);
  }
  return out.sort();
}

function describe(op: FsOp): string {
  return op.op === 'rename' ? `rename ${op.from} → ${op.to}` : op.op === 'write' ? `write ${op.path} (${op.size} B)` : `${op.op} ${op.path}`;
}

interface User {
  token: string;
  client: StratusClient;
}

async function trial(t: Test, server: ServerProcess, user: User, n: number, seed: number): Promise<void> {
  const started = Date.now();
  t.comment(`seed ${seed} (replay: STRATUS_CRASH_SEED=${seed})`);
  const { ops, killAfter, delayMs } = plan(seed);
  // The trial's own top folder, made on the server before the drive starts.
  const top = `trial-${n}`;
  await user.client.create({ parent_id: (await user.client.root()).id, name: top, kind: 'dir' });
  const cacheDir = await tempDir(t, 'crash-cache');
  const mountpoint = await tempDir(t, 'crash-mnt');
  const ackFile = path.join(await tempDir(t, 'crash-ack'), 'acks.jsonl');
  const mounting = mountDrive(t, server, user.token, { cacheDir, mountpoint });

  let killing: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let failedBeforeKill: OpResult | undefined;
  const kill = () => (killing ??= mounting.then((d) => d.kill()));
  const trigger = () => (delayMs ? (timer ??= setTimeout(kill, delayMs)) : kill());
  let acked = 0;
  // The driver starts while the drive does, and makes its first op once the drive is ready.
  const driven = ops.map((op) => under(path.join(mountpoint, top), op));
  const run = startOps(t, driven, {
    ackFile,
    gate: mounting,
    onStart: (i) => void (i === 0 && killAfter === 0 && trigger()),
    onResult: (r) => {
      if (r.outcome !== 'ok') failedBeforeKill = killing ? undefined : r;
      else if (++acked === killAfter) trigger();
    },
  });
  await mounting; // (its failure, rather than the driver's that follows from it)
  const results = await run.done;
  // Done before the kill (all ops made, or a failure): kill now, uploads possibly still queued.
  clearTimeout(timer);
  await kill();
  if (failedBeforeKill) t.fail(`op ${failedBeforeKill.i} (${describe(failedBeforeKill.op)}) failed with ${failedBeforeKill.outcome} before the kill`);

  const acks = (await fs.readFile(ackFile, 'utf8').catch(() => '')).split('\n').filter(Boolean);
  const returned = results.filter((r) => r.outcome === 'ok').length;
  t.ok(acks.length === returned && acks.every((line, i) => line === JSON.stringify(driven[i])), `the acknowledgement log holds the ${returned} ops that returned, in order`);
  const inFlight = results.find((r) => r.outcome !== 'ok');
  t.comment(
    `${ops.length} ops, kill after ${killAfter} acks + ${delayMs} ms; ${acks.length} acknowledged; ` +
      (inFlight ? `in flight: ${describe(ops[inFlight.i]!)} → ${inFlight.outcome} (${inFlight.ms} ms)` : 'none in flight'),
  );

  // Same cache folder and mountpoint; SIGTERM drains what is queued before the process exits.
  const restarted = Date.now();
  const again = await mountDrive(t, server, user.token, { cacheDir, mountpoint });
  const code = await again.stop();
  t.equal(code, 0, `the restarted mount drains everything and exits 0 (${Date.now() - restarted} ms)`);
  // What kept it from draining, for the replay.
  if (code !== 0) t.comment(`restarted mount's log:\n${again.stderr().slice(-4000)}`);

  let model: Model = new Map();
  for (const op of ops.slice(0, acks.length)) model = apply(model, op);
  const candidates = [treeOfModel(model)];
  if (inFlight) {
    const op = ops[inFlight.i]!;
    candidates.push(treeOfModel(apply(model, op), op.op === 'write' ? op.path : undefined));
  }
  const found = await remoteTree(user.client, top);
  const diffs = candidates.map((c) => differences(found, c));
  if (diffs.some((d) => d.length === 0)) t.pass(`the server has every acknowledged op (${Object.keys(found).length} paths)`);
  else {
    // The ops (✓ acknowledged, ? in flight) and how the server differs, for whoever replays the seed.
    t.comment(ops.map((op, i) => `${i < acks.length ? '✓' : i === inFlight?.i ? '?' : ' '} ${i} ${describe(op)}`).join('\n'));
    for (const [i, d] of diffs.entries()) t.comment(`server vs the acknowledged ops${i === 0 ? '' : ' and the in-flight one'}:\n  ${d.join('\n  ')}`);
    t.fail(`seed ${seed}: the server's tree is not what the acknowledged ops make (${diffs[0]!.length} paths differ)`);
  }
  t.comment(`trial took ${Date.now() - started} ms`);
}

const count = Number(process.env.STRATUS_CRASH_TRIALS ?? 20);
const replay = process.env.STRATUS_CRASH_SEED;
const seeds = replay ? [Number(replay)] : Array.from({ length: count }, () => randomInt(2 ** 31));

t.test(`kill -9 of the mount at a random point of a burst of ops, ${seeds.length} trials: nothing acknowledged is lost`, async (t) => {
  const server = await startServerProcess(t);
  const user = await server.addUser('crash');
  const started = Date.now();
  for (const [n, seed] of seeds.entries()) await t.test(`trial ${n + 1}, seed ${seed}`, (t) => trial(t, server, user, n + 1, seed));
  t.comment(`${seeds.length} trials in ${Date.now() - started} ms`);
});
