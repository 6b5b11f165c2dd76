import { randomUUID } from 'node:crypto';
import type { StratusClient } from '../../protocol/client.js';
import type { NodeInfo } from '../../protocol/types.js';
import type { LocalNode, StateStore } from '../state/store.js';
import { conflictedCopyName } from '../sync/conflict-name.js';

const NEEDS_LISTING = Symbol('needs listing');
const LOCAL_PREFIX = 'local:';

/** An id for a node made while the server was unreachable (the commit queue creates it later). */
export function newLocalId(): string {
  return LOCAL_PREFIX + randomUUID();
}

/** A node this mount made offline, not yet known to the server. */
export function isLocalId(id: string): boolean {
  return id.startsWith(LOCAL_PREFIX);
}

/**
 * The tree the mount shows: every node it has seen, by id and by (parent, name), in memory,
 * written behind to the state store so a remount lists at once. Folders are listed from the
 * server on first use (paged), then kept by what the mount does and by the change feed.
 */
export class Tree {
  private readonly byId = new Map<string, LocalNode>();
  private readonly kids = new Map<string, Map<string, string>>();
  /** Per folder, how many of its children are folders (its link count is 2 + that). */
  private readonly subdirs = new Map<string, number>();
  private readonly listing = new Map<string, Promise<void>>();
  private dirtyIds = new Set<string>();
  private deletedIds = new Set<string>();
  private pendingCursor: number | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private flushQueued = false;
  rootId = '';
  /** Names this device in a conflicted copy (see insert). */
  device = 'this device';
  /** Counts changes made by this mount (not by the change feed), and when each node last had one. */
  private localSeq = 0;
  private readonly localAt = new Map<string, number>();
  private applyingFeed = false;
  /** Set by the commit queue: the node has a rename or delete waiting to be sent. */
  hasQueuedOp?: (id: string) => boolean;

  constructor(
    private readonly store: StateStore,
    private readonly client: StratusClient,
  ) {}

  /** Loads the saved tree; with none, fetches the root. Returns the saved change cursor, if any. */
  async load(): Promise<number | undefined> {
    for (const node of await this.store.loadNodes()) this.insert(node);
    const root = [...this.byId.values()].find((n) => n.parentId === null);
    const cursor = await this.store.getMeta('cursor');
    if (root && cursor !== undefined) {
      this.rootId = root.id;
      return Number(cursor);
    }
    await this.store.resetTree();
    this.byId.clear();
    this.kids.clear();
    this.subdirs.clear();
    // Take the cursor before reading anything, so the catch-up covers whatever changes during the first listings.
    const { cursor: head } = await this.client.changesHead();
    const info = await this.client.root();
    this.rootId = info.id;
    this.upsert(fromInfo(info, false));
    this.pendingCursor = head;
    await this.flush();
    return head;
  }

  get(id: string): LocalNode | undefined {
    return this.byId.get(id);
  }

  root(): LocalNode {
    return this.byId.get(this.rootId)!;
  }

  childId(dirId: string, name: string): string | undefined {
    return this.kids.get(dirId)?.get(name);
  }

  child(dirId: string, name: string): LocalNode | undefined {
    const id = this.childId(dirId, name);
    return id === undefined ? undefined : this.byId.get(id);
  }

  children(dirId: string): LocalNode[] {
    const out: LocalNode[] = [];
    for (const id of this.kids.get(dirId)?.values() ?? []) {
      const n = this.byId.get(id);
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
    return dir.listed ? 2 + (this.subdirs.get(dir.id) ?? 0) : 1;
  }

  /** Fetches a folder's children once (concurrent callers share the one listing). */
  async ensureListed(dir: LocalNode): Promise<void> {
    if (dir.listed || dir.kind !== 'dir') return;
    let p = this.listing.get(dir.id);
    if (!p) {
      p = this.list(dir).finally(() => this.listing.delete(dir.id));
      this.listing.set(dir.id, p);
    }
    await p;
  }

  private async list(dir: LocalNode): Promise<void> {
    const infos = await this.client.allChildren(dir.id);
    const seen = new Set<string>();
    for (const info of infos) {
      seen.add(info.id);
      const known = this.byId.get(info.id);
      this.upsert(fromInfo(info, known?.listed ?? false));
    }
    // What the server does not list is gone — except what this mount made offline (not there yet).
    for (const id of [...(this.kids.get(dir.id)?.values() ?? [])]) if (!seen.has(id) && !isLocalId(id)) this.removeSubtree(id);
    const current = this.byId.get(dir.id);
    if (current) this.upsert({ ...current, listed: true });
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
      const next = this.child(node.id, part);
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
        const next = this.child(node.id, path.slice(start, end));
        if (!next) return undefined;
        node = next;
      }
      start = end + 1;
    }
    return node;
  }

  /** Applies the server's state of a node (from a response or the change feed). */
  applyInfo(info: NodeInfo): void {
    if (info.deleted_at !== null) {
      this.removeSubtree(info.id);
      return;
    }
    const known = this.byId.get(info.id);
    const parent = info.parent_id === null ? undefined : this.byId.get(info.parent_id);
    if (info.parent_id !== null && !(parent && parent.listed)) {
      // Its folder is not listed here: the listing will bring it when needed.
      if (known) this.removeSubtree(info.id);
      return;
    }
    this.upsert(fromInfo(info, known?.listed ?? false));
  }

  /** A mark to compare later local changes against (taken before a change-feed page is requested). */
  localMark(): number {
    return this.localSeq;
  }

  /**
   * Whether this mount changed the node after `mark`: a change-feed page requested before that
   * may hold an older state of it (a rename made here while the page was on its way) and must
   * not undo the local change — the caller fetches the node's current state instead.
   */
  changedLocallySince(id: string, mark: number): boolean {
    return (this.localAt.get(id) ?? -1) > mark;
  }

  /** Local-change marks at or before `mark` are no longer needed (no page older than it is in flight). */
  forgetLocalBefore(mark: number): void {
    for (const [id, at] of this.localAt) if (at <= mark) this.localAt.delete(id);
  }

  /** Applies a node's state from the change feed (not a change made by this mount). */
  applyFeed(info: NodeInfo): void {
    // A rename or delete made offline and still queued: the server's state of the node is older.
    if (this.hasQueuedOp?.(info.id)) return;
    this.applyingFeed = true;
    try {
      this.applyInfo(info);
    } finally {
      this.applyingFeed = false;
    }
  }

  /** Changes fields of a known node locally (sizes and mtimes of files being written). */
  patch(id: string, fields: Partial<Omit<LocalNode, 'id'>>): LocalNode | undefined {
    const n = this.byId.get(id);
    if (!n) return undefined;
    const next = { ...n, ...fields };
    this.upsert(next);
    return next;
  }

  /** A node made here while the server was unreachable (see newLocalId). */
  addLocal(node: LocalNode): void {
    this.upsert(node);
  }

  /** A node made offline got its server id (and maybe another name): it and its children follow. */
  remap(localId: string, info: NodeInfo, joined = false): void {
    const old = this.byId.get(localId);
    const kids = this.kids.get(localId);
    if (old) {
      this.detach(old);
      this.byId.delete(localId);
      this.kids.delete(localId);
      this.subdirs.delete(localId);
      this.dirtyIds.delete(localId);
      this.deletedIds.add(localId);
    }
    // A folder joined on the server (one of that name existed) has children this mount has not listed.
    const listed = info.kind === 'dir' && !joined && (old?.listed ?? false);
    const parent = info.parent_id === null ? undefined : this.byId.get(info.parent_id);
    if (parent?.listed || old) this.upsert(fromInfo(info, listed));
    for (const childId of kids?.values() ?? []) {
      const child = this.byId.get(childId);
      if (child) this.upsert({ ...child, parentId: info.id });
    }
  }

  removeSubtree(id: string): void {
    const n = this.byId.get(id);
    if (!n) return;
    this.stampLocal(id);
    for (const childId of [...(this.kids.get(id)?.values() ?? [])]) this.removeSubtree(childId);
    this.kids.delete(id);
    this.subdirs.delete(id);
    this.detach(n);
    this.byId.delete(id);
    this.dirtyIds.delete(id);
    this.deletedIds.add(id);
    this.scheduleFlush();
  }

  setCursor(cursor: number): void {
    this.pendingCursor = cursor;
    this.scheduleFlush();
  }

  private stampLocal(id: string): void {
    if (!this.applyingFeed) this.localAt.set(id, ++this.localSeq);
  }

  private upsert(node: LocalNode): void {
    this.stampLocal(node.id);
    const old = this.byId.get(node.id);
    if (old) this.detach(old);
    this.insert(node);
    this.deletedIds.delete(node.id);
    this.dirtyIds.add(node.id);
    this.scheduleFlush();
  }

  private insert(node: LocalNode): void {
    this.byId.set(node.id, node);
    if (node.parentId !== null) {
      let m = this.kids.get(node.parentId);
      if (!m) this.kids.set(node.parentId, (m = new Map()));
      // A stale entry under the same name (replaced on the server) gives way to the newer node.
      const other = m.get(node.name);
      const otherNode = other === undefined ? undefined : this.byId.get(other);
      if (otherNode && other !== node.id && isLocalId(otherNode.id) && !isLocalId(node.id)) {
        // A node made offline here meets one of the same name from the server: both are kept,
        // ours under a conflicted-copy name (the commit queue creates it under the name it has then).
        const renamed = { ...otherNode, name: conflictedCopyName(otherNode.name, this.device, new Date()) };
        m.delete(otherNode.name);
        this.byId.set(renamed.id, renamed);
        m.set(renamed.name, renamed.id);
        this.dirtyIds.add(renamed.id);
      } else if (other !== undefined && other !== node.id) {
        this.removeSubtree(other);
        m = this.kids.get(node.parentId) ?? new Map();
        this.kids.set(node.parentId, m);
      }
      const counted = m.get(node.name) === node.id;
      m.set(node.name, node.id);
      if (node.kind === 'dir' && !counted) this.subdirs.set(node.parentId, (this.subdirs.get(node.parentId) ?? 0) + 1);
    }
  }

  private detach(node: LocalNode): void {
    if (node.parentId === null) return;
    const m = this.kids.get(node.parentId);
    if (m?.get(node.name) !== node.id) return;
    m.delete(node.name);
    if (node.kind === 'dir') this.subdirs.set(node.parentId, (this.subdirs.get(node.parentId) ?? 1) - 1);
  }

  private scheduleFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    this.flushing = this.flushing.then(() => {
      this.flushQueued = false;
      return this.writeOut();
    });
  }

  private async writeOut(): Promise<void> {
    const upserts = [...this.dirtyIds].map((id) => this.byId.get(id)).filter((n): n is LocalNode => !!n);
    const deletes = [...this.deletedIds];
    const cursor = this.pendingCursor;
    this.dirtyIds = new Set();
    this.deletedIds = new Set();
    this.pendingCursor = undefined;
    if (!upserts.length && !deletes.length && cursor === undefined) return;
    try {
      await this.store.saveNodes(upserts, deletes, cursor);
    } catch {
      // The saved tree is a cache: a failed write costs a re-listing after restart, nothing else.
    }
  }

  /** Waits until everything known so far is written to the state store. */
  async flush(): Promise<void> {
    this.scheduleFlush();
    await this.flushing;
  }
}

export function fromInfo(info: NodeInfo, listed: boolean): LocalNode {
  return {
    id: info.id,
    parentId: info.parent_id,
    name: info.name,
    kind: info.kind,
    headVersion: info.head_version,
    size: info.size,
    mtime: info.mtime,
    mode: info.mode,
    listed: info.kind === 'dir' ? listed : false,
    ...(info.target !== undefined && { target: info.target }),
  };
}
