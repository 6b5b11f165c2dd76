import { EventEmitter } from 'node:events';
import { rm } from 'node:fs/promises';
import type { LogWrites, Tree } from '../node/tree.js';
import type { StateStore } from '../state/store.js';
import { isStructural, type ContentOp, type LoggedOp, type Op } from '../model/ops.js';
import type { Backoff } from '../retry/backoff.js';

/**
 * A node made here of which nothing was sent: its entries; `replaced`, a node the server has that
 * it had replaced by a rename (that replace is not dropped with it: the caller's own operation
 * takes it over — the next rename over the name, or a delete); `moved`: it left that name since
 * (so the replaced node is only to be deleted).
 */
export interface Forgettable {
  entries: readonly Entry[];
  replaced?: number;
  moved?: boolean;
}

/** Where the sender is with an entry: the one record it keeps per entry. */
export interface SendState {
  /** Being sent right now. */
  inFlight: boolean;
  /** Sent at least once (an answer may have been lost): it can no longer be coalesced away. */
  started: boolean;
  /** Made moot here while in flight (its node was deleted): dropped once the attempt ends. */
  cancelled: boolean;
  /** Leaving the log (done): its removal is being written; it is not sent again, and what waits on it still waits. */
  leaving: boolean;
  /** Not tried again before this time (ms since the epoch). */
  retryAt: number;
  /** Created at its first failure. */
  backoff?: Backoff;
}

/** An operation in the log, as the process holds it. */
export interface Entry<T extends Op = Op> extends LoggedOp<T> {
  /** Written to the state store (the sender takes only durable entries). */
  durable: boolean;
  /** Bytes of the cache bound its staging file holds (content), given back when it leaves. */
  reserved: number;
  send: SendState;
}

/**
 * The durable operation log (DESIGN §6): every local change appends what it owes the server, in
 * the same transaction as the change to the tree, before the call that made it returns. Coalesces
 * what is safe: a newer save supersedes an older one not yet sent; a node made and removed before
 * anything of it was sent leaves nothing behind; an mtime set after a save rides with it.
 *
 * Events: `changed` (entries came or went), `released` (bytes of the cache bound given back),
 * `staging-gone` (a content entry's staging file left the log).
 */
export class OpLog extends EventEmitter {
  private entries: Entry[] = [];
  /** The newest content entry of each node (getattr asks on every call). */
  private readonly newest = new Map<number, Entry<ContentOp>>();
  /** Each node's entries, in order (every question about one node looks only at its own). */
  private readonly byIno = new Map<number, Entry[]>();
  /** Renames, moves, deletes, creates and attribute changes per node (how many). */
  private readonly structural = new Map<number, number>();
  /** Bytes of content not yet sent. */
  private contentBytes = 0;
  /** Entries naming each node (as their node, folder or replaced node): the tree keeps such a node's server id. */
  private readonly named = new Map<number, number>();
  /** Nodes whose queued content waits for the file's release before it is sent (see hold). */
  private readonly held = new Set<number>();
  /** Staging files still read by open handles: not deleted until released. */
  private readonly stagingUsers = new Map<string, number>();
  private readonly orphanStaging = new Set<string>();
  private holdsOff = false;
  /** The version of each node this mount's own latest change made (see made). */
  private readonly ownVersions = new Map<number, number>();
  /** What the next write takes (see takeWrites). */
  private readonly unwritten = new Set<Entry>();
  private readonly removals = new Set<number>();
  private readonly rewrites = new Set<Entry>();

  constructor(
    private readonly store: StateStore,
    private readonly tree: Tree,
  ) {
    super();
    tree.hasPendingOps = (ino) => (this.named.get(ino) ?? 0) > 0;
    tree.hasPendingStructural = (ino) => this.structural.has(ino);
    tree.logWrites = () => this.takeWrites();
  }

  /**
   * What the next write of the state store takes from the log (with the tree's rows, one
   * transaction: Tree.persist): entries appended since, seqs of entries gone since, entries whose
   * operation changed since they were written.
   */
  private takeWrites(): LogWrites {
    const adds = [...this.unwritten];
    const ops = adds.map((e) => e.op);
    const removeOps = [...this.removals];
    const updates = [...this.rewrites];
    this.unwritten.clear();
    this.removals.clear();
    this.rewrites.clear();
    return {
      addOps: adds.map((e, i) => ({ op: ops[i]!, createdAt: e.createdAt })),
      removeOps,
      updateOps: updates.map((e) => ({ seq: e.seq, op: e.op, createdAt: e.createdAt })),
      written: (seqs) => {
        adds.forEach((e, i) => {
          e.seq = seqs[i]!;
          e.durable = true;
          // Gone from the log while being written (superseded, forgotten): its row goes with the next write.
          if (!this.entriesOf(e.op.ino).includes(e)) this.removals.add(e.seq);
          // Changed while being written (see made): the newer operation is written next.
          else if (e.op !== ops[i]) this.rewrites.add(e);
        });
      },
    };
  }

  /** The entry leaves the log on disk with the next write (or is never written, if it was not yet). */
  private unwrite(e: Entry): void {
    if (this.unwritten.delete(e)) return;
    if (e.durable) this.removals.add(e.seq);
    this.rewrites.delete(e);
  }

  /** Loads what was logged before (a restart); each content entry holds its size of the cache bound again when it can. */
  async load(reserve: (bytes: number) => Promise<void>): Promise<void> {
    for (const logged of await this.store.loadOps()) {
      const e: Entry = { ...logged, durable: true, reserved: 0, send: newSendState() };
      if (e.op.kind === 'content') {
        const size = e.op.size;
        await reserve(size).then(
          () => (e.reserved = size),
          () => undefined,
        );
      }
      this.entries.push(e);
    }
    this.reindex();
  }

  list(): readonly Entry[] {
    return this.entries;
  }

  /** Nodes with something not yet sent. */
  get pendingNodes(): number {
    return this.byIno.size;
  }

  /** Bytes of content not yet sent. */
  get pendingBytes(): number {
    return this.contentBytes;
  }

  /** The node's entries, in order. */
  entriesOf(ino: number): readonly Entry[] {
    return this.byIno.get(ino) ?? [];
  }

  /** The newest queued content of a node, if any (what a reader must see until it is committed). */
  latestContent(ino: number): ContentOp | undefined {
    return this.newest.get(ino)?.op;
  }

  /**
   * Logs `op`: `change` applies it to the tree (it runs after the entry is known, so the tree keeps
   * what the entry names), then both are written in one transaction. Resolves once durable. Not
   * sent before `notBefore` (ms since the epoch), unless the sender is told to retry everything now.
   */
  async append(op: Op, change?: () => void, reserved = 0, notBefore = 0, forget?: Forgettable): Promise<void> {
    // A node made here and never sent that this operation removes (a rename over it): its entries go in the same transaction.
    const removed: Entry[] = forget ? [...forget.entries] : [];
    if (op.kind === 'content') {
      // A newer save of a file supersedes the ones not sent yet since its last rename or create.
      const mine = this.entriesOf(op.ino);
      const superseded: Entry[] = [];
      for (let i = mine.length - 1; i >= 0; i--) {
        const e = mine[i]!;
        if (e.op.kind !== 'content' || e.send.started) break;
        superseded.push(e);
      }
      removed.push(...superseded);
      const oldest = superseded.at(-1)?.op as ContentOp | undefined;
      if (oldest) op = { ...op, baseVersion: oldest.baseVersion };
    }
    op = this.onOwn(op, this.own(op.ino)) ?? op;
    if (op.kind === 'setattr' && op.mode === undefined && op.mtime !== undefined) {
      // An mtime set after a save not sent yet rides with that save.
      const last = this.lastOf(op.ino);
      if (last?.op.kind === 'content' && !last.send.started) {
        last.op = { ...last.op, mtime: op.mtime };
        change?.();
        if (last.durable) this.rewrites.add(last);
        await this.tree.persist();
        this.emit('changed');
        return;
      }
    }
    const entry: Entry = { seq: -1, op, createdAt: Date.now(), durable: false, reserved, send: { ...newSendState(), retryAt: notBefore } };
    for (const e of removed) {
      this.unlink(e);
      this.unwrite(e);
    }
    this.entries.push(entry);
    this.index(entry);
    this.unwritten.add(entry);
    try {
      change?.();
      await this.tree.persist();
      // A save of the node landed while this was being written (see made): the rebased op is what stays.
      if (this.rewrites.has(entry)) await this.tree.persist();
    } catch (err) {
      this.unlink(entry);
      this.unwritten.delete(entry);
      this.entries.push(...removed);
      this.entries.sort((a, b) => (a.seq < 0 ? Infinity : a.seq) - (b.seq < 0 ? Infinity : b.seq));
      this.reindex();
      throw err;
    }
    for (const e of removed) await this.release(e);
    if (forget) this.letGo(forget.entries, forget.replaced);
    this.emit('changed');
  }

  /**
   * Whether the node was made here and nothing of it was sent (and nothing else queued names it):
   * then removing it costs the server nothing — its entries can simply go (`forgetIfUnsent`, or
   * with the operation that removes it: `append`'s `forget`). Undefined: it cannot.
   */
  forgettable(ino: number): Forgettable | undefined {
    if (!this.unsentCreation(ino)) return undefined;
    const entries = [...this.entriesOf(ino)];
    let replaced: number | undefined;
    let moved = false;
    for (const e of entries) {
      if (e.op.kind !== 'move') continue;
      if (e.op.replace !== undefined) [replaced, moved] = [e.op.replace, false];
      else moved = true;
    }
    return { entries, ...(replaced !== undefined && { replaced, moved }) };
  }

  /**
   * A node made here and removed before anything of it was sent: its entries are dropped and
   * `change` (its removal from the tree) is written with that — nothing of it goes to the server.
   * `forgotten` false: nothing done (see `forgettable` for `replaced` and `moved`).
   */
  async forgetIfUnsent(ino: number, change: () => void): Promise<{ forgotten: boolean; replaced?: number; moved?: boolean }> {
    const plan = this.forgettable(ino);
    if (!plan) return { forgotten: false };
    const mine = plan.entries;
    for (const e of mine) {
      this.unlink(e);
      this.unwrite(e);
    }
    change();
    await this.tree.persist();
    for (const e of mine) await this.release(e);
    this.letGo(mine, plan.replaced);
    this.emit('changed');
    return { forgotten: true, ...(plan.replaced !== undefined && { replaced: plan.replaced, moved: plan.moved }) };
  }

  /** The version of the node this mount's own latest change made (0: none since the start). */
  own(ino: number): number {
    return this.ownVersions.get(ino) ?? 0;
  }

  /**
   * The node is at `version` by this mount's doing (`newIdentity`: as another server node, see
   * onOwn). Every local edit of a node is made on top of
   * the previous local one, so its queued saves are on top of this version now (no false conflict
   * when a file is saved again while its previous save is on the wire) and a delete logged after it
   * deletes it. Written with the entries — and taken by every entry logged from now on — so a
   * restart, which forgets this map, does not take this mount's own save for another device's edit.
   */
  async made(ino: number, version: number, newIdentity = false): Promise<void> {
    this.ownVersions.set(ino, version);
    for (const e of this.entriesOf(ino)) {
      if (e.send.inFlight) continue;
      const rebased = this.onOwn(e.op, version, newIdentity);
      if (!rebased) continue;
      e.op = rebased;
      await this.update(e);
    }
  }

  /**
   * `op` made on top of `version` when it was made on an older one (undefined: nothing to change).
   * `newIdentity`: the node became another server node (a rename over a file: the destination's
   * versions, not the source's), so whatever version `op` was made on, it is on top of this one.
   */
  private onOwn(op: Op, version: number, newIdentity = false): Op | undefined {
    const older = (v: number) => (newIdentity ? v !== version : v < version);
    if (op.kind === 'content' && older(op.baseVersion)) return { ...op, baseVersion: version };
    if (op.kind === 'delete' && op.ifVersion !== undefined && older(op.ifVersion)) return { ...op, ifVersion: version };
    return undefined;
  }

  /** Writes a changed entry (a new base version, a later mtime). */
  async update(entry: Entry): Promise<void> {
    // Not written yet: the write takes the entry as it is then (takeWrites).
    if (!entry.durable) return;
    this.rewrites.add(entry);
    await this.tree.persist();
  }

  /**
   * The entry was sent (or settled): it leaves the log, its staging file and room go. It stays in
   * the log until its removal is written (with what the tree learnt from its reply, e.g. the
   * node's server id): until then its node stays busy and the structural lane taken, so nothing
   * that depends on it is sent while a crash could still make the restarted mount send it again
   * (a folder made, its reply written late, moved meanwhile: made twice).
   */
  async done(entry: Entry): Promise<void> {
    if (!this.entries.includes(entry) || entry.send.leaving) return;
    entry.send.leaving = true;
    try {
      if (entry.durable) {
        this.removals.add(entry.seq);
        this.rewrites.delete(entry);
        await this.tree.persist();
      } else this.unwritten.delete(entry);
    } catch (err) {
      entry.send.leaving = false;
      throw err;
    }
    this.unlink(entry);
    await this.release(entry);
    this.letGo([entry]);
    this.emit('changed');
  }

  /** Drops a node's queued content (the file was deleted or replaced here); what is in flight is cancelled. */
  async dropContent(ino: number): Promise<void> {
    for (const e of this.entriesOf(ino).filter((x) => x.op.kind === 'content')) {
      if (e.send.inFlight) e.send.cancelled = true;
      else await this.done(e);
    }
  }

  /**
   * Keeps a node's queued content from being sent until `unhold`: close(2) of one descriptor
   * queued it (durable), but the file is still open through another (a shell's `cmd > file`
   * closes its first descriptor before `cmd` writes through the dup'd one). The next close
   * supersedes the held entry, so the server gets one version, not an empty one first. Holds live
   * in memory only: after a restart everything is sent. A drain ignores them.
   */
  hold(ino: number): void {
    if (!this.holdsOff) this.held.add(ino);
  }

  unhold(ino: number): void {
    if (this.held.delete(ino)) this.emit('changed');
  }

  isHeld(ino: number): boolean {
    return this.held.has(ino);
  }

  /** From now on nothing is held (the mount is stopping: everything goes). */
  releaseHolds(): void {
    this.holdsOff = true;
    this.held.clear();
    this.emit('changed');
  }

  useStaging(path: string): void {
    this.stagingUsers.set(path, (this.stagingUsers.get(path) ?? 0) + 1);
  }

  async releaseStaging(path: string): Promise<void> {
    const n = (this.stagingUsers.get(path) ?? 1) - 1;
    if (n > 0) {
      this.stagingUsers.set(path, n);
      return;
    }
    this.stagingUsers.delete(path);
    if (this.orphanStaging.delete(path)) await rm(path, { force: true });
  }

  /** Resolves once `cond` holds (checked whenever entries change); rejects after `timeoutMs`. */
  waitUntil(cond: () => boolean, timeoutMs: number): Promise<void> {
    if (cond()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onChange = () => {
        if (!cond()) return;
        cleanup();
        resolve();
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`operation log: still ${this.entries.length} pending after ${timeoutMs} ms`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.off('changed', onChange);
      };
      this.on('changed', onChange);
    });
  }

  /** A node made here whose creation has not started to be sent, and which nothing else queued names. */
  private unsentCreation(ino: number): boolean {
    const mine = this.entriesOf(ino);
    if (!mine.some((e) => e.op.kind === 'create') || mine.some((e) => e.send.started)) return false;
    // Named only by its own entries (no create or move into it, no rename over it, waits to be sent).
    return (this.named.get(ino) ?? 0) === mine.length;
  }

  /** Nodes the removed entries named and nothing queued names any more: the tree may let them go. */
  private letGo(removed: readonly Entry[], keep?: number): void {
    for (const e of removed) {
      for (const ino of namedBy(e)) {
        if (this.named.has(ino) || ino === keep) continue;
        this.tree.forget(ino);
        this.tree.settled(ino);
      }
    }
  }

  /** Anything of the entry's node logged after it (what a reply to it says may be outdated here). */
  laterOf(entry: Entry): boolean {
    const mine = this.entriesOf(entry.op.ino);
    return mine.length > 0 && mine[mine.length - 1] !== entry;
  }

  /** A rename, move or delete of the entry's node logged after it. */
  laterStructural(entry: Entry): boolean {
    const mine = this.entriesOf(entry.op.ino);
    const i = mine.indexOf(entry);
    return mine.some((e, j) => j > i && isStructural(e.op));
  }

  private lastOf(ino: number): Entry | undefined {
    return this.entriesOf(ino).at(-1);
  }

  private unlink(entry: Entry): void {
    const i = this.entries.indexOf(entry);
    if (i < 0) return;
    this.entries.splice(i, 1);
    const ino = entry.op.ino;
    const mine = this.byIno.get(ino);
    if (mine) {
      const k = mine.indexOf(entry);
      if (k >= 0) mine.splice(k, 1);
      if (!mine.length) this.byIno.delete(ino);
    }
    if (isStructural(entry.op)) count(this.structural, ino, -1);
    if (entry.op.kind === 'content') this.contentBytes -= entry.op.size;
    for (const named of namedBy(entry)) count(this.named, named, -1);
    if (this.newest.get(ino) === entry) {
      this.newest.delete(ino);
      const last = [...this.entriesOf(ino)].reverse().find((e) => e.op.kind === 'content');
      if (last) this.newest.set(ino, last as Entry<ContentOp>);
    }
  }

  private index(entry: Entry): void {
    const mine = this.byIno.get(entry.op.ino);
    if (mine) mine.push(entry);
    else this.byIno.set(entry.op.ino, [entry]);
    if (isStructural(entry.op)) count(this.structural, entry.op.ino, 1);
    if (entry.op.kind === 'content') this.contentBytes += entry.op.size;
    for (const named of namedBy(entry)) count(this.named, named, 1);
    if (entry.op.kind === 'content') this.newest.set(entry.op.ino, entry as Entry<ContentOp>);
  }

  private reindex(): void {
    this.byIno.clear();
    this.structural.clear();
    this.contentBytes = 0;
    this.named.clear();
    this.newest.clear();
    for (const e of this.entries) this.index(e);
  }

  private async release(entry: Entry): Promise<void> {
    if (entry.reserved) this.emit('released', entry.reserved);
    entry.reserved = 0;
    if (entry.op.kind !== 'content') return;
    const path = entry.op.staging;
    this.emit('staging-gone', path);
    if (this.stagingUsers.has(path)) this.orphanStaging.add(path);
    else await rm(path, { force: true });
  }
}

function newSendState(): SendState {
  return { inFlight: false, started: false, cancelled: false, leaving: false, retryAt: 0 };
}

function count(m: Map<number, number>, key: number, by: number): void {
  const n = (m.get(key) ?? 0) + by;
  if (n > 0) m.set(key, n);
  else m.delete(key);
}

/** The nodes an entry names: its own, the folder it creates or moves into, the node it replaces. */
function namedBy(entry: LoggedOp): number[] {
  const { op } = entry;
  const out = [op.ino];
  if (op.kind === 'create' || op.kind === 'move') out.push(op.parent);
  if (op.kind === 'move' && op.replace !== undefined) out.push(op.replace);
  return out;
}
