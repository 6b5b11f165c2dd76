import type { StratusClient } from '../../protocol/client.js';
import { FETCH_DEADLINE_MS, withDeadline } from '../../protocol/deadline.js';
import type { NodeInfo } from '../../protocol/types.js';
import type { StateChange, StateStore } from '../state/store.js';
import { ROOT_INO, serverFields, type LocalNode } from '../model/local-node.js';
import type { LoggedOp } from '../model/ops.js';

const NEEDS_LISTING = Symbol('needs listing');

/** The operation log's part of a write: entries to add, drop and rewrite, and who to tell the added entries' seqs. */
export interface LogWrites {
  addOps?: Omit<LoggedOp, 'seq'>[];
  removeOps?: number[];
  updateOps?: LoggedOp[];
  written?: (seqs: number[]) => void;
}

/**
 * The tree the mount shows: every node it has seen, by inode number, by server id and by (folder,
 * name), in memory and in the state store. Local changes are written with the operation they log
 * (one transaction, `persist`); what the server says (listings, the change feed, replies) is
 * written behind — a cache a remount lists at once. Folders are listed from the server on first
 * use (paged), then kept by what the mount does and by the change feed.
 */
export class Tree {
  private readonly byIno = new Map<number, LocalNode>();
  /** Nodes removed here that queued operations still name (they need the server id once it comes). */
  private readonly gone = new Map<number, LocalNode>();
  private readonly bySid = new Map<string, number>();
  private readonly kids = new Map<number, Map<string, number>>();
  /** Per folder, how many of its children are folders (its link count is 2 + that). */
  private readonly subdirs = new Map<number, number>();
  private readonly listing = new Map<number, Promise<void>>();
  /** Server nodes waiting for a name a node made or changed here holds (see place). */
  private readonly deferred = new Map<number, NodeInfo[]>();
  private dirty = new Set<number>();
  private pendingCursor: string | undefined;
  private writing: Promise<unknown> = Promise.resolve();
  private behindQueued = false;
  private nextIno = ROOT_INO + 1;
  readonly rootIno = ROOT_INO;
  /** Counts changes made by this mount (not by the change feed), and when each node last had one. */
  private localSeq = 0;
  private readonly localAt = new Map<number, number>();
  private applyingFeed = false;
  /** Nodes whose feed change was passed over while a rename, move or delete of theirs waited to be sent. */
  private readonly passedOver = new Set<string>();
  /** Set by the operation log: the node has operations not sent yet / ones that change its name or place. */
  hasPendingOps: (ino: number) => boolean = () => false;
  hasPendingStructural: (ino: number) => boolean = () => false;
  /** Set by the syncer: fetch a node's current state and apply it as the change feed would. */
  refetch: (sid: string) => void = () => undefined;
  /** Set by the operation log: what it has to write, taken with the tree's rows (see persist). */
  logWrites: () => LogWrites = () => ({});
  /** Told once when a write of the state fails (from then on nothing more is written: see persist). */
  onBroken: (err: Error) => void = () => undefined;
  private broken: Error | undefined;
  /**
   * Set by the daemon: a name left by its node not through the kernel (the change feed, a reply of
   * the server, a listing) — the kernel may still hold it in its entry cache: make it forget.
   */
  onVacated: (path: string, kind: LocalNode['kind']) => void = () => undefined;
  /** Set by the daemon: nothing of the node waits to be sent any more. */
  onSettled: (ino: number) => void = () => undefined;
  /** Set by the daemon: a file's size, mtime or mode changed not through the kernel (its cached attributes are stale). */
  onStale: (ino: number) => void = () => undefined;
  /** Changes the kernel is making right now (a FUSE call): it knows the names they change. */
  private kernelOps = 0;
  /** Depth of removeSubtree: only the top of a removed subtree leaves a name the kernel must forget. */
  private removing = 0;
  /** Set by the Vfs: the node is open for writing (what is written there will need its server id). */
  inUse: (ino: number) => boolean = () => false;

  constructor(
    private readonly store: StateStore,
    private readonly client: StratusClient,
  ) {}

  /** Loads the saved tree; with none, fetches the root. Returns the saved change cursor, if any. */
  async load(): Promise<string | undefined> {
    const stored = await this.store.loadNodes();
    for (const n of stored) this.nextIno = Math.max(this.nextIno, n.ino + 1);
    const cursor = await this.store.getMeta('cursor');
    if (stored.some((n) => n.ino === ROOT_INO && !n.gone) && cursor !== undefined) {
      for (const { gone, ...n } of stored) this.remember(n, gone === true);
      for (const n of stored) if (!n.gone) this.insert(n);
      return cursor;
    }
    await this.store.resetTree();
    for (const { gone: _, ...n } of await this.store.loadNodes()) this.remember(n, true);
    // Take the cursor before reading anything, so the catch-up covers whatever changes during the first listings.
    const { cursor: head } = await this.client.changesHead();
    const info = await this.client.root();
    this.upsert({ ino: ROOT_INO, sid: null, parent: null, name: '', listed: false, ...serverFields(info) });
    this.setSid(ROOT_INO, info.id);
    this.pendingCursor = head;
    await this.flush();
    return head;
  }

  private remember(n: LocalNode, gone: boolean): void {
    if (gone) this.gone.set(n.ino, n);
    if (n.sid !== null) this.bySid.set(n.sid, n.ino);
  }

  /** A live node. */
  get(ino: number): LocalNode | undefined {
    return this.byIno.get(ino);
  }

  /** A live node, or one removed here that queued operations still name. */
  node(ino: number): LocalNode | undefined {
    return this.byIno.get(ino) ?? this.gone.get(ino);
  }

  /** The live node the server knows as `sid`. */
  bySidLive(sid: string): LocalNode | undefined {
    const ino = this.bySid.get(sid);
    return ino === undefined ? undefined : this.byIno.get(ino);
  }

  root(): LocalNode {
    return this.byIno.get(ROOT_INO)!;
  }

  /** The root's server id. */
  get rootSid(): string {
    return this.root().sid!;
  }

  child(dir: number, name: string): LocalNode | undefined {
    const ino = this.kids.get(dir)?.get(name);
    return ino === undefined ? undefined : this.byIno.get(ino);
  }

  children(dir: number): LocalNode[] {
    const out: LocalNode[] = [];
    for (const ino of this.kids.get(dir)?.values() ?? []) {
      const n = this.byIno.get(ino);
      if (n) out.push(n);
    }
    return out;
  }

  /**
   * A folder's link count as POSIX file systems keep it: 2 (its name and its `.`) plus one per
   * sub-folder (their `..`); 1 — "not known", as btrfs and iso9660 answer — while its children
   * have not been listed here (finding out would cost a listing per stat).
   */
  dirLinks(dir: LocalNode): number {
    return dir.listed ? 2 + (this.subdirs.get(dir.ino) ?? 0) : 1;
  }

  /** Fetches a folder's children once (concurrent callers share the one listing). */
  async ensureListed(dir: LocalNode): Promise<void> {
    if (dir.listed || dir.kind !== 'dir') return;
    let p = this.listing.get(dir.ino);
    if (!p) {
      p = this.list(dir).finally(() => this.listing.delete(dir.ino));
      this.listing.set(dir.ino, p);
    }
    await p;
  }

  private async list(dir: LocalNode): Promise<void> {
    if (dir.sid === null) return;
    const infos = await withDeadline(this.client.allChildren(dir.sid), FETCH_DEADLINE_MS, `listing of "${dir.name}"`);
    const current = this.byIno.get(dir.ino);
    if (!current || current.listed) return;
    const seen = new Set<number>();
    for (const info of infos) {
      const ino = this.bySid.get(info.id);
      // Renamed, moved or deleted here and not sent yet: the local state stands.
      if (ino !== undefined && this.hasPendingStructural(ino)) {
        seen.add(ino);
        this.passedOver.add(info.id);
        continue;
      }
      const placed = this.place(info, dir.ino);
      if (placed !== undefined) seen.add(placed);
    }
    // What the server does not list is gone — except what this mount made or changed and has not sent yet.
    for (const ino of [...(this.kids.get(dir.ino)?.values() ?? [])]) {
      const n = this.byIno.get(ino);
      if (!seen.has(ino) && n && n.sid !== null && !this.hasPendingOps(ino)) this.removeSubtree(ino);
    }
    this.upsert({ ...current, listed: true });
  }

  /** Resolves a mount path ("/a/b") to a node, listing folders on the way as needed. */
  async resolve(path: string): Promise<LocalNode | undefined> {
    // Fast path without awaiting: every folder on the way is listed already (the common case).
    const known = this.resolveListed(path);
    if (known !== NEEDS_LISTING) return known;
    let node = this.root();
    for (const part of path.split('/')) {
      if (part === '') continue;
      if (node.kind !== 'dir') return undefined;
      await this.ensureListed(node);
      const next = this.child(node.ino, part);
      if (!next) return undefined;
      node = next;
    }
    return node;
  }

  private resolveListed(path: string): LocalNode | undefined | typeof NEEDS_LISTING {
    let node = this.root();
    let start = 1;
    while (start <= path.length) {
      let end = path.indexOf('/', start);
      if (end === -1) end = path.length;
      if (end > start) {
        if (node.kind !== 'dir') return undefined;
        if (!node.listed) return NEEDS_LISTING;
        const next = this.child(node.ino, path.slice(start, end));
        if (!next) return undefined;
        node = next;
      }
      start = end + 1;
    }
    return node;
  }

  /**
   * Applies the server's state of a node (a reply, a refetch): returns its inode number, if the
   * tree shows it. The size and mtime of a node with changes not sent yet stay as they are here,
   * unless `force` (the server's state is what the node shows now: a save of ours became a
   * conflicted copy).
   */
  applyServer(info: NodeInfo, force = false): number | undefined {
    const ino = this.bySid.get(info.id);
    if (info.deleted_at !== null) {
      if (ino !== undefined) this.removeSubtree(ino);
      return undefined;
    }
    if (info.parent_id === null) return this.place(info, null, force);
    const parentIno = this.bySid.get(info.parent_id);
    const parent = parentIno === undefined ? undefined : this.byIno.get(parentIno);
    if (!parent?.listed) {
      // Its folder is not listed here: the listing will bring it when needed.
      if (ino !== undefined) this.removeSubtree(ino);
      return undefined;
    }
    return this.place(info, parent.ino, force);
  }

  /**
   * Applies a node's state from the change feed (not a change made by this mount). Returns the
   * inode number of a file whose kernel attributes may now be stale (its content attributes
   * changed, or it took the name of another node).
   */
  applyFeed(info: NodeInfo): number | undefined {
    const ino = this.bySid.get(info.id);
    // Renamed, moved or deleted here and not sent yet: the server's state of it is older — but
    // it may carry a change of content made elsewhere, fetched again once ours is settled.
    if (ino !== undefined && this.hasPendingStructural(ino)) {
      this.passedOver.add(info.id);
      return undefined;
    }
    const before = ino === undefined ? undefined : this.byIno.get(ino);
    const parentIno = info.parent_id === null ? undefined : this.bySid.get(info.parent_id);
    const heldName = parentIno === undefined ? undefined : this.kids.get(parentIno)?.get(info.name);
    this.applyingFeed = true;
    let after: LocalNode | undefined;
    try {
      const placed = this.applyServer(info);
      after = placed === undefined ? undefined : this.byIno.get(placed);
    } finally {
      this.applyingFeed = false;
    }
    // A share's role changed: everything of it known here takes the new one (shares do not nest).
    if (after?.entry && before !== undefined && before.readOnly !== after.readOnly) this.setReadOnlyUnder(after.ino, after.readOnly === true);
    if (!after || after.kind !== 'file') return undefined;
    if (heldName !== undefined && heldName !== after.ino) return after.ino;
    const changed = before !== undefined && (before.headVersion !== after.headVersion || before.size !== after.size || before.mtime !== after.mtime || before.mode !== after.mode);
    return changed ? after.ino : undefined;
  }

  private setReadOnlyUnder(dir: number, readOnly: boolean): void {
    for (const child of this.children(dir)) {
      const { readOnly: _was, ...rest } = child;
      this.replaceRecord(child.ino, readOnly ? { ...rest, readOnly: true } : rest);
      if (child.kind === 'dir') this.setReadOnlyUnder(child.ino, readOnly);
    }
  }

  /** A mark to compare later local changes against (taken before a change-feed page is requested). */
  localMark(): number {
    return this.localSeq;
  }

  /**
   * Whether this mount changed the node the server knows as `sid` after `mark`: a change-feed page
   * requested before that may hold an older state of it and must not undo the local change — the
   * caller fetches the node's current state instead.
   */
  changedLocallySince(sid: string, mark: number): boolean {
    const ino = this.bySid.get(sid);
    return ino !== undefined && (this.localAt.get(ino) ?? -1) > mark;
  }

  /** Local-change marks at or before `mark` are no longer needed (no page older than it is in flight). */
  forgetLocalBefore(mark: number): void {
    for (const [ino, at] of this.localAt) if (at <= mark) this.localAt.delete(ino);
  }

  /** An inode number no node has had in this state. */
  newIno(): number {
    return this.nextIno++;
  }

  /** A node made here (not on the server yet), under an inode number from `newIno`. */
  addLocal(ino: number, fields: Omit<LocalNode, 'ino' | 'sid'>): LocalNode {
    const node: LocalNode = { ...fields, ino, sid: null };
    this.upsert(node);
    return node;
  }

  /** Changes fields of a live node locally (a rename, a mode, sizes and times of files being written). */
  patch(ino: number, fields: Partial<Omit<LocalNode, 'ino' | 'sid'>>): LocalNode | undefined {
    const n = this.byIno.get(ino);
    if (!n) return undefined;
    const next = { ...n, ...fields };
    this.upsert(next);
    return next;
  }

  /** The server has the node now, as `sid` (a replace hands over the replaced node's id: it leaves that one). */
  setSid(ino: number, sid: string): void {
    const n = this.node(ino);
    if (!n || n.sid === sid) return;
    const previous = this.bySid.get(sid);
    if (previous !== undefined && previous !== ino) {
      const other = this.node(previous);
      // The change feed showed the node before its reply came (ours was not in the tree then to hold
      // the name): that copy of it goes, ours is the node. One changed here meanwhile only lets go of the id.
      if (other && this.byIno.has(previous) && !this.hasPendingOps(previous)) this.removeSubtree(previous);
      else if (other) this.replaceRecord(previous, { ...other, sid: null });
    }
    if (n.sid !== null && this.bySid.get(n.sid) === ino) this.bySid.delete(n.sid);
    this.bySid.set(sid, ino);
    this.stampLocal(ino);
    this.replaceRecord(ino, { ...n, sid });
    this.wake(ino);
  }

  /**
   * Server fields of a node the sender just heard about (a version committed, a reply's state):
   * name and place stay local, and so do size and mtime when `keepLocal` (something logged after
   * the reply's change has its own).
   */
  patchServer(ino: number, info: NodeInfo | { head_version: number; size: number; mtime: number }, keepLocal = false): void {
    const n = this.node(ino);
    if (!n) return;
    this.stampLocal(ino);
    if ('id' in info) {
      // The whole server state: a role or share entry it no longer says is gone.
      const { readOnly: _readOnly, entry: _entry, ...base } = n;
      this.replaceRecord(ino, { ...base, ...serverFields(info), ...(keepLocal && { size: n.size, mtime: n.mtime }) });
      return;
    }
    this.replaceRecord(ino, { ...n, headVersion: info.head_version, size: info.size, mtime: info.mtime, ...(keepLocal && { size: n.size, mtime: n.mtime }) });
  }

  /** A node removed here for good, once no queued operation names it and no writer has it open. */
  forget(ino: number): void {
    const n = this.gone.get(ino);
    if (!n || this.hasPendingOps(ino) || this.inUse(ino)) return;
    this.gone.delete(ino);
    if (n.sid !== null && this.bySid.get(n.sid) === ino) this.bySid.delete(n.sid);
    this.dirty.add(ino);
  }

  /** Nothing of the node waits to be sent any more: a server node waiting for its name may take it now. */
  settled(ino: number): void {
    if (this.hasPendingOps(ino)) return;
    this.wake(ino);
    this.onSettled(ino);
    const sid = this.byIno.get(ino)?.sid ?? this.gone.get(ino)?.sid;
    if (sid && this.passedOver.delete(sid)) this.refetch(sid);
  }

  /** Removes a node and what is under it; what queued operations still name is kept aside (`node`). */
  removeSubtree(ino: number): void {
    const n = this.byIno.get(ino);
    if (!n) return;
    this.stampLocal(ino);
    if (this.removing === 0) this.vacated(n);
    this.removing++;
    try {
      for (const child of [...(this.kids.get(ino)?.values() ?? [])]) this.removeSubtree(child);
    } finally {
      this.removing--;
    }
    this.kids.delete(ino);
    this.subdirs.delete(ino);
    this.detach(n);
    this.byIno.delete(ino);
    if (this.hasPendingOps(ino) || this.inUse(ino)) this.gone.set(ino, n);
    else if (n.sid !== null && this.bySid.get(n.sid) === ino) this.bySid.delete(n.sid);
    this.dirty.add(ino);
    this.scheduleBehind();
  }

  setCursor(cursor: string): void {
    this.pendingCursor = cursor;
    this.scheduleBehind();
  }

  /**
   * Places the server's state of a node under `parent` (null: the root); returns its inode number.
   * A node made or changed here and not settled with the server yet keeps its name: the server's
   * node of that name waits (`deferred`) until the sender has settled ours — ours may be that very
   * node (its create's reply still on the way), or it becomes a conflicted copy — and is placed then.
   */
  private place(info: NodeInfo, parent: number | null, force = false): number | undefined {
    let ino = this.bySid.get(info.id);
    if (parent !== null) {
      const other = this.kids.get(parent)?.get(info.name);
      if (other !== undefined && other !== ino && this.unsettled(other)) {
        const waiting = this.deferred.get(other) ?? [];
        this.deferred.set(other, [...waiting.filter((w) => w.id !== info.id), info]);
        return undefined;
      }
    }
    // A node removed here and back (its delete refused) lists its children again.
    const known = ino === undefined ? undefined : this.byIno.get(ino);
    if (ino === undefined) ino = parent === null ? ROOT_INO : this.nextIno++;
    this.gone.delete(ino);
    this.bySid.set(info.id, ino);
    const fields = serverFields(info);
    // Saves and times made here and not sent yet are newer than what the server says.
    const local = known && !force && this.hasPendingOps(ino) ? { size: known.size, mtime: known.mtime } : {};
    this.upsert({ ino, sid: info.id, parent, name: info.name, listed: info.kind === 'dir' && (known?.listed ?? false), ...fields, ...local });
    return ino;
  }

  /** Made here and not on the server yet, or with changes not sent yet. */
  private unsettled(ino: number): boolean {
    return this.byIno.get(ino)?.sid === null || this.hasPendingOps(ino);
  }

  /**
   * The node no longer holds its name (or got its server id): what waited for that name is placed
   * now. A waiting state of a node the tree knows by now (ours: its create's or replace's reply
   * came meanwhile) may be older than that reply: it is fetched afresh instead (`refetch`).
   */
  private wake(ino: number): void {
    const waiting = this.deferred.get(ino);
    if (!waiting) return;
    this.deferred.delete(ino);
    queueMicrotask(() => {
      for (const info of waiting) {
        if (this.bySid.has(info.id)) this.refetch(info.id);
        else this.applyServer(info);
      }
    });
  }

  private stampLocal(ino: number): void {
    if (!this.applyingFeed) this.localAt.set(ino, ++this.localSeq);
  }

  private upsert(node: LocalNode): void {
    this.stampLocal(node.ino);
    const old = this.byIno.get(node.ino);
    if (old && (old.parent !== node.parent || old.name !== node.name)) this.vacated(old);
    if (old) this.detach(old);
    this.insert(node);
    if (old) this.staleAttrs(old, node);
    this.dirty.add(node.ino);
    this.scheduleBehind();
  }

  /** Replaces a node's record without touching the name index (fields other than name and place). */
  private replaceRecord(ino: number, next: LocalNode): void {
    const old = this.byIno.get(ino);
    if (this.byIno.has(ino)) this.byIno.set(ino, next);
    else if (this.gone.has(ino)) this.gone.set(ino, next);
    if (old) this.staleAttrs(old, next);
    this.dirty.add(ino);
    this.scheduleBehind();
  }

  private insert(node: LocalNode): void {
    this.byIno.set(node.ino, node);
    if (node.parent === null) return;
    let m = this.kids.get(node.parent);
    if (!m) this.kids.set(node.parent, (m = new Map()));
    const other = m.get(node.name);
    if (other !== undefined && other !== node.ino) {
      // A stale entry under the same name (replaced on the server) gives way to the newer node.
      this.removeSubtree(other);
      m = this.kids.get(node.parent) ?? new Map<string, number>();
      this.kids.set(node.parent, m);
    }
    const counted = m.get(node.name) === node.ino;
    m.set(node.name, node.ino);
    if (node.kind === 'dir' && !counted) this.subdirs.set(node.parent, (this.subdirs.get(node.parent) ?? 0) + 1);
  }

  private detach(node: LocalNode): void {
    if (node.parent === null) return;
    const m = this.kids.get(node.parent);
    if (m?.get(node.name) !== node.ino) return;
    m.delete(node.name);
    if (node.kind === 'dir') this.subdirs.set(node.parent, (this.subdirs.get(node.parent) ?? 1) - 1);
    this.wake(node.ino);
  }

  /** Runs a change a FUSE call makes: the kernel knows the names it changes (no onVacated). */
  byKernel<T>(fn: () => T): T {
    this.kernelOps++;
    try {
      return fn();
    } finally {
      this.kernelOps--;
    }
  }

  /** "/a/b" of a node, by its folders up to the root; undefined when a folder on the way is unknown. */
  pathOf(node: LocalNode): string | undefined {
    const parts: string[] = [];
    let n: LocalNode | undefined = node;
    for (let depth = 0; n && n.ino !== this.rootIno; depth++) {
      if (n.parent === null || depth > 4096) return undefined;
      parts.push(n.name);
      n = this.get(n.parent);
    }
    return n ? `/${parts.reverse().join('/')}` : undefined;
  }

  private staleAttrs(old: LocalNode, now: LocalNode): void {
    if (this.kernelOps > 0 || now.kind === 'dir') return;
    if (old.size !== now.size || old.mtime !== now.mtime || old.mode !== now.mode) this.onStale(now.ino);
  }

  /** A node leaves the name it holds, not through the kernel: the kernel is told to forget the name. */
  private vacated(node: LocalNode): void {
    if (this.kernelOps > 0 || node.parent === null) return;
    if (this.kids.get(node.parent)?.get(node.name) !== node.ino) return;
    const path = this.pathOf(node);
    if (path !== undefined) this.onVacated(path, node.kind);
  }

  /** What changed in memory since the last write, as rows (taken: the caller writes them). */
  private takeChanges(): StateChange {
    const upserts = [];
    const deletes = [];
    for (const ino of this.dirty) {
      const live = this.byIno.get(ino);
      const gone = live ? undefined : this.gone.get(ino);
      if (live) upserts.push(live);
      else if (gone) upserts.push({ ...gone, gone: true });
      else deletes.push(ino);
    }
    this.dirty = new Set();
    const cursor = this.pendingCursor;
    this.pendingCursor = undefined;
    return { upserts, deletes, ...(cursor !== undefined && { cursor }) };
  }

  /**
   * Writes everything changed in memory so far — the tree's rows and what the operation log has
   * to write (`logWrites`) — in one transaction, after every earlier write. Every write is such a
   * snapshot: memory is consistent between operations (each applies its tree change and its log
   * entry in one synchronous step), so the state on disk always is one the mount was in — never a
   * tree change without the operation that made it, nor an operation without its tree change,
   * whatever a kill -9 interrupts.
   */
  persist(): Promise<void> {
    const p = this.writing.then(() => this.writeSnapshot());
    this.writing = p.catch(() => undefined);
    return p;
  }

  private async writeSnapshot(): Promise<void> {
    if (this.broken) throw this.broken;
    const taken = this.takeChanges();
    const log = this.logWrites();
    const empty = !taken.upserts?.length && !taken.deletes?.length && taken.cursor === undefined;
    if (empty && !log.addOps?.length && !log.removeOps?.length && !log.updateOps?.length) return;
    try {
      const seqs = await this.store.write({ ...taken, addOps: log.addOps, removeOps: log.removeOps, updateOps: log.updateOps });
      log.written?.(seqs);
    } catch (err) {
      // Not written, and the changes are made in memory (the operations waiting on this write fail
      // and say so): writing anything more could put half of one on disk. The state on disk stays
      // the last consistent one; the drive must be restarted (fail-stop, as databases do).
      this.broken = Object.assign(new Error(`the drive's state could not be written (${(err as Error).message}); nothing more is saved until the drive restarts`), { code: 'EIO' });
      this.onBroken(this.broken);
      throw err;
    }
  }

  /** What the server said, written behind (a failed write is the fail-stop of `persist`: logged once). */
  private scheduleBehind(): void {
    if (this.behindQueued || this.broken) return;
    this.behindQueued = true;
    this.writing = this.writing.then(async () => {
      this.behindQueued = false;
      await this.writeSnapshot().catch(() => undefined);
    });
  }

  /** Waits until everything known so far is written to the state store. */
  async flush(): Promise<void> {
    this.scheduleBehind();
    await this.writing;
  }
}
