import type { StratusClient } from '../protocol/client.js';
import { ApiError } from '../protocol/errors.js';
import type { HistoryEntry, HistoryPage, NodeInfo } from '../protocol/types.js';
import { describe } from './drive-path.js';
import { pathNow } from './on-drive.js';
import { allTrash } from './trash-items.js';

/**
 * `stratus restore PATH --at TIME` (issue 12): a file, or a folder with everything in it, as it
 * was at TIME — by adding to history, never rewriting it. What was under PATH at TIME comes from
 * the journal (GET /v1/history, by node id); each of those nodes is then brought back, top down:
 *
 * - in the trash now: restored from it (to its folder and name at TIME; where the server puts it
 *   when that name is taken now);
 * - renamed or moved since: moved back to its folder and name at TIME, only if that name is free
 *   (a taken name is tried again once the others have moved: b renamed to a's name and a to
 *   another is undone; two nodes that swapped names stay as they are); else left where it is,
 *   and said so;
 * - a file whose head is not the version it had at TIME: that version's content becomes a new
 *   version (POST …/versions/:v/restore), unless the head has that content already (the same
 *   blocks: restored before, or saved back to it), so running it again adds nothing. A file
 *   without content at TIME (version 0) keeps what it has now.
 *
 * Nothing made after TIME is removed or changed. A node that cannot be brought back (purged, a
 * version past retention, a read-only share) is a failure, reported, and the rest goes on; a
 * folder that cannot be brought back out of the trash is skipped with what is in it.
 */

/** What restoreAt asks of the server (a StratusClient, or a fake of one in tests). */
export type HistoryClient = Pick<StratusClient, 'history' | 'node' | 'allChildren' | 'restore' | 'restoreVersion' | 'update' | 'manifest' | 'trash'>;

export type StepKind = 'restored' | 'reverted' | 'moved' | 'left' | 'failed';

/** One thing done (or, in a dry run, to be done) to one node. */
export interface Step {
  kind: StepKind;
  id: string;
  /** Where it was at TIME, relative to the drive's root ('/'-separated; '' is the root). */
  path: string;
  /** What happened, in a few words ("from the trash", "to version 3 (now version 7)"…). */
  detail: string;
}

export interface RestoreAtOptions {
  /** TIME, in ms since the epoch. */
  at: number;
  /** The path at TIME, as names from the drive's root (none: the whole drive). */
  names: string[];
  /** Only find out what would be done: no change is made. */
  dryRun?: boolean;
  /** Called with each step as it is done (for printing as it goes). */
  onStep?: (step: Step) => void;
}

export interface RestoreAtResult {
  /** TIME as sent to the server (ISO 8601). */
  at: string;
  /** PATH as it was at TIME. */
  top: HistoryEntry;
  steps: Step[];
  /** Nodes that existed under PATH at TIME (PATH's own included). */
  examined: number;
  /** Of those, the ones that needed nothing. */
  unchanged: number;
  counts: Record<StepKind, number>;
}

/** A refusal of PATH itself (it did not exist at TIME, or was not a folder): one line, nothing done. */
export class NotThenError extends Error {}

/** A node to move back: where it was at TIME, where it is now, and what was in that folder now (when listed). */
interface Deferred {
  entry: HistoryEntry;
  path: string;
  now: NodeInfo;
  siblings: Map<string, NodeInfo> | undefined;
}

export async function restoreAt(client: HistoryClient, opts: RestoreAtOptions): Promise<RestoreAtResult> {
  const at = new Date(opts.at).toISOString();
  const dryRun = opts.dryRun === true;
  const steps: Step[] = [];
  const counts: Record<StepKind, number> = { restored: 0, reverted: 0, moved: 0, left: 0, failed: 0 };
  let examined = 0;
  let unchanged = 0;
  const deferred: Deferred[] = [];

  const step = (s: Step) => {
    steps.push(s);
    counts[s.kind]++;
    opts.onStep?.(s);
  };
  const fail = (entry: HistoryEntry, path: string, detail: string) => step({ kind: 'failed', id: entry.id, path, detail });

  const top = await entryAt(client, at, opts.names);

  /** The place a node should have: its folder and name at TIME (the root has none). */
  const placeOf = (e: HistoryEntry) => ({ parent_id: e.parent_id ?? undefined, name: e.name });
  const inPlace = (e: HistoryEntry, n: NodeInfo) => e.parent_id === null || (n.parent_id === e.parent_id && n.name === e.name);

  // A dry run changes nothing, so it keeps account of the names its planned steps would take
  // and free (folder id + NUL + name), to tell what a real run would find free.
  const claimed = new Set<string>();
  const vacated = new Set<string>();
  const key = (parentId: string | null, name: string) => `${parentId}\u0000${name}`;

  /** Out of the trash, to its place at TIME when that is free, else where the server puts it. */
  const untrash = async (e: HistoryEntry, n: NodeInfo, path: string): Promise<NodeInfo | undefined> => {
    if (dryRun) {
      claimed.add(key(e.parent_id, e.name));
      step({ kind: 'restored', id: e.id, path, detail: 'from the trash' });
      return { ...n, deleted_at: null, parent_id: e.parent_id, name: e.name };
    }
    let back: NodeInfo;
    try {
      back = await client.restore(e.id, inPlace(e, n) ? {} : placeOf(e));
    } catch (err) {
      if (!(err instanceof ApiError && err.code === 'exists' && !inPlace(e, n))) return void fail(e, path, `cannot restore it from the trash: ${describe(err)}`);
      // Its name at TIME is taken now: back to its folder at TIME, under the name the server gives it.
      try {
        back = await client.restore(e.id, e.parent_id === null ? {} : { parent_id: e.parent_id });
      } catch (again) {
        return void fail(e, path, `cannot restore it from the trash: ${describe(again)}`);
      }
    }
    const where =
      back.parent_id === e.parent_id && back.name === e.name
        ? ''
        : back.parent_id === e.parent_id
          ? `, as "${back.name}" ("${e.name}" is taken)`
          : `, to ${(await pathNow(client, back)) || '/'} (its folder then is not there)`;
    step({ kind: 'restored', id: e.id, path, detail: `from the trash${where}` });
    return back;
  };

  /** Would the name of `e` at TIME be free in a real run (dry run: what is there now, and what the plan moves)? */
  const freeInPlan = async (e: HistoryEntry, siblings: Map<string, NodeInfo> | undefined): Promise<boolean> => {
    const k = key(e.parent_id, e.name);
    if (claimed.has(k)) return false;
    if (vacated.has(k)) return true;
    const there = siblings ?? new Map((await client.allChildren(e.parent_id!).catch(() => [])).map((c) => [c.id, c]));
    return ![...there.values()].some((s) => s.name === e.name && s.id !== e.id);
  };

  /** One try to move a node back to its place at TIME: done, or its name there is taken (or a failure, reported). */
  const tryMove = async (d: Deferred): Promise<'moved' | 'taken' | 'failed'> => {
    const { entry: e, now: n, path } = d;
    const from = await pathNow(client, n);
    if (dryRun) {
      if (!(await freeInPlan(e, d.siblings))) return 'taken';
      vacated.add(key(n.parent_id, n.name));
      claimed.add(key(e.parent_id, e.name));
    } else {
      try {
        await client.update(e.id, placeOf(e));
      } catch (err) {
        if (err instanceof ApiError && err.code === 'exists') return 'taken';
        fail(e, path, `cannot move it back from ${from}: ${describe(err)}`);
        return 'failed';
      }
    }
    step({ kind: 'moved', id: e.id, path, detail: `back from ${from}` });
    return 'moved';
  };

  // A dry run restores nothing, so what a folder's restore would carry with it (what went to the
  // trash with the folder, not an item of the trash of its own) still shows as in the trash.
  let items: Promise<Set<string> | undefined> | undefined;
  const ownTrashItem = async (id: string): Promise<boolean> => {
    items ??= allTrash(client).then((all) => new Set(all.map((i) => i.id)), () => undefined);
    return (await items)?.has(id) ?? true;
  };

  /** `untrashed`: the folder `e` is in was planned out of the trash (dry run). */
  const visit = async (e: HistoryEntry, path: string, siblings: Map<string, NodeInfo> | undefined, untrashed = false): Promise<void> => {
    examined++;
    const [stepsBefore, deferredBefore] = [steps.length, deferred.length];
    let now = siblings?.get(e.id);
    if (!now) {
      try {
        now = await client.node(e.id);
      } catch (err) {
        const gone = err instanceof ApiError && err.code === 'not_found';
        return void fail(e, path, gone ? 'gone for good (purged from the trash)' : describe(err));
      }
    }
    // In a dry run: out of the trash in the plan (what is in it comes back with it).
    let planned = false;
    if (now.deleted_at !== null && dryRun && untrashed && now.parent_id === e.parent_id && !(await ownTrashItem(e.id))) {
      [now, planned] = [{ ...now, deleted_at: null }, true]; // comes back with its folder
    }
    if (now.deleted_at !== null) {
      planned = dryRun;
      now = await untrash(e, now, path);
      if (!now) return; // and nothing in it can come back either
    } else if (!inPlace(e, now)) {
      // Back to its place at TIME if the name is free there; a taken name is tried again at the end.
      const d = { entry: e, path, now, siblings };
      const moved = await tryMove(d);
      if (moved === 'taken') deferred.push(d);
      if (moved === 'moved') now = { ...now, parent_id: e.parent_id, name: e.name };
    }
    if (e.kind === 'file' && e.version > 0 && now.head_version !== e.version && !(await sameContent(client, e.id, e.version))) {
      if (dryRun) step({ kind: 'reverted', id: e.id, path, detail: `to version ${e.version} (now at version ${now.head_version})` });
      else {
        try {
          const made = await client.restoreVersion(e.id, e.version);
          step({ kind: 'reverted', id: e.id, path, detail: `to version ${e.version} (as version ${made.version})` });
        } catch (err) {
          fail(e, path, `cannot restore version ${e.version}: ${describe(err)}`);
        }
      }
    }
    if (steps.length === stepsBefore && deferred.length === deferredBefore) unchanged++;
    if (e.kind === 'dir') await visitChildren(e, path, now, planned);
  };

  const visitChildren = async (dir: HistoryEntry, path: string, now: NodeInfo, untrashed: boolean): Promise<void> => {
    // What is in the folder now, by id: one listing instead of a look-up per child (a folder
    // that is still in the trash, in a dry run, lists nothing: each child is looked up).
    const live = new Map<string, NodeInfo>();
    if (now.deleted_at === null) {
      try {
        for (const c of await client.allChildren(dir.id)) live.set(c.id, c);
      } catch {
        // each child is looked up on its own
      }
    }
    let after: string | undefined;
    for (;;) {
      let page: HistoryPage;
      try {
        page = await client.history(at, dir.id, { after });
      } catch (err) {
        return void fail(dir, path, `cannot read what was in it then: ${describe(err)}`);
      }
      for (const child of page.children) await visit(child, path ? `${path}/${child.name}` : child.name, live, untrashed);
      // (A page may come empty with more to follow: what is left out still moves the pages on.)
      if (page.next === null || page.next === after) return;
      after = page.next;
    }
  };

  await visit(top, opts.names.join('/'), undefined);

  // Names that were taken: free now that the rest is back (renames since TIME that went round)?
  for (let progress = true; progress && deferred.length; ) {
    progress = false;
    for (const d of deferred.splice(0)) {
      const moved = await tryMove(d);
      if (moved === 'taken') deferred.push(d);
      else progress = true;
    }
  }
  for (const d of deferred) {
    const now = dryRun ? d.now : await client.node(d.entry.id).catch(() => d.now);
    step({ kind: 'left', id: d.entry.id, path: d.path, detail: `at ${await pathNow(client, now)}: "${d.path}" is taken` });
  }

  return { at, top, steps, examined, unchanged, counts };
}

/** The file's head has the content of `version` (the same blocks in the same order). */
async function sameContent(client: HistoryClient, id: string, version: number): Promise<boolean> {
  try {
    const [head, then] = await Promise.all([client.manifest(id, 'head'), client.manifest(id, version)]);
    return head.size === then.size && head.blocks.length === then.blocks.length && head.blocks.every((b, i) => b.hash === then.blocks[i]!.hash);
  } catch {
    return false; // restoring it will say what is wrong
  }
}

/** The node `names` led to at TIME, walking the folders as they were then. */
async function entryAt(client: HistoryClient, at: string, names: string[]): Promise<HistoryEntry> {
  let entry: HistoryEntry;
  try {
    entry = (await client.history(at, undefined, { limit: 1 })).node;
  } catch (err) {
    if (err instanceof ApiError && err.code === 'not_found') throw new NotThenError(`"${names.join('/') || '/'}" did not exist`);
    throw err;
  }
  for (const [i, name] of names.entries()) {
    if (entry.kind !== 'dir') throw new NotThenError(`"${names.slice(0, i).join('/')}" was not a folder`);
    const found = await childAt(client, at, entry.id, name);
    if (!found) throw new NotThenError(`"${names.slice(0, i + 1).join('/')}" did not exist`);
    entry = found;
  }
  return entry;
}

async function childAt(client: HistoryClient, at: string, dirId: string, name: string): Promise<HistoryEntry | undefined> {
  let after: string | undefined;
  for (;;) {
    const page = await client.history(at, dirId, { after });
    const hit = page.children.find((c) => c.name === name);
    if (hit) return hit;
    if (page.next === null || page.next === after) return undefined;
    after = page.next;
  }
}

/** One line per step, its kind first: "reverted  docs/a.txt: to version 3 (as version 7)". */
export function stepLine(s: Step, dryRun = false): string {
  const verb = dryRun ? { restored: 'restore', reverted: 'revert', moved: 'move', left: 'leave', failed: 'cannot' }[s.kind] : s.kind;
  return `${verb.padEnd(8)}  ${s.path || '/'}: ${s.detail}`;
}

/** The closing line: how many of each, and what failed. */
export function summaryLine(r: RestoreAtResult, shown: string, when: string, dryRun = false): string {
  const c = r.counts;
  const parts = [
    `${c.reverted} reverted`,
    `${c.restored} restored from the trash`,
    `${c.moved} moved back`,
    ...(c.left ? [`${c.left} left where they are (name taken)`] : []),
    `${r.unchanged} unchanged`,
    ...(c.failed ? [`${c.failed} failed`] : []),
  ];
  return `${dryRun ? 'dry run, nothing changed: ' : ''}${shown} as it was at ${when}: ${parts.join(', ')}`;
}
