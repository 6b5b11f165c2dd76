import { open, rm } from 'node:fs/promises';
import type { LocalNode } from '../model/local-node.js';
import type { Tree } from '../node/tree.js';
import type { OpLog } from '../oplog/op-log.js';
import type { BlockSource } from '../blocks/block-source.js';
import type { Extents } from '../model/extents.js';
import type { PinnedManifest } from '../blocks/pinned-manifest.js';
import type { Manifests } from './manifests.js';
import { readFully } from '../blocks/file-io.js';
import { fillFromBase } from '../blocks/base-fill.js';
import type { StagingFile, StagingFiles } from './staging-file.js';

/** What a session knows of the handles on it (handles.ts: Handle). */
export interface SessionHandle {
  writable: boolean;
  flushed: boolean;
  internal?: boolean;
}

/**
 * A file open for writing: one session per node from its first open for writing to the release
 * of the last, shared by all its handles (read-only handles opened meanwhile read it too). A
 * close(2) queues a snapshot of it (invariant 5) without ending it: its handles go on reading and
 * writing the live content, and the next close queues the newer content.
 */
export interface WriteSession {
  ino: number;
  /** The live content: every read and write of the session's handles goes to this file. */
  file: StagingFile;
  size: number;
  mtime: number;
  /** The server version the content is made on, of the server node `sid` (the node's when the session began). */
  baseVersion: number;
  sid: string | null;
  /** Opens for writing (handles, and opens joining right now). */
  writers: number;
  /** Handles reading or writing this session. */
  handles: Set<SessionHandle>;
  /** Changes made (writes, truncates); `queuedGen` is what the last queued snapshot holds. */
  gen: number;
  queuedGen: number;
  /** Writes and truncates in progress: a snapshot waits for them (`idle` wakes it). */
  changing: number;
  idle: (() => void)[];
  /** A snapshot being queued: changes wait for it. */
  snapshotting?: Promise<void>;
  /** The first change after a snapshot copies the queued file into a new one: this copy. */
  copying?: Promise<void>;
  /** The last writer released it; its read-only handles may still read its file. */
  ended: boolean;
  /** Deleted or replaced here: nothing of it is queued any more. */
  unlinked: boolean;
  /**
   * Opened on a version without downloading it (DESIGN §6): bytes [0, limit) are the version's
   * wherever the staging file holds none (`file.extents`); reads and the commit fill them in.
   */
  base?: { manifest: PinnedManifest; sid: string; limit: number };
  /** The span of every byte written ([first, end)): the commit re-cuts from its first block. */
  changed?: [number, number];
  /** A fill from the version in progress: writes and truncates wait for it. */
  filling?: Promise<void>;
}

/** Past this many separate ranges a session with a base downloads the rest and goes on without it. */
const MAX_PRESENT_RANGES = 1000;

/**
 * The write sessions of the mount, by inode number: started (from queued content, or from the
 * version the node shows), changed (writes, truncates — after a snapshot, on a copy), snapshotted
 * into the operation log at close(2), ended at the last release.
 */
export class WriteSessions {
  private readonly live = new Map<number, WriteSession>();
  /** Sessions being set up (a copy or a download may take a while). */
  private readonly starting = new Map<number, Promise<WriteSession>>();
  /** Data ranges of queued staging files this mount wrote (see start). */
  private readonly stagedExtents = new Map<string, Extents>();

  constructor(
    private readonly o: { staging: StagingFiles; log: OpLog; tree: Tree; manifests: Manifests; source: BlockSource },
  ) {
    o.log.on('staging-gone', (path: string) => this.stagedExtents.delete(path));
  }

  /** Whether a write session has the node (being started, written, or read through). */
  has(ino: number): boolean {
    return this.live.has(ino) || this.starting.has(ino);
  }

  get(ino: number): WriteSession | undefined {
    return this.live.get(ino);
  }

  /** The node has content written here that the server does not have yet (open for writing, or queued). */
  hasLocalContent(ino: number): boolean {
    return this.live.has(ino) || this.starting.has(ino) || this.o.log.latestContent(ino) !== undefined;
  }

  /** The file was deleted or replaced here: its session writes an unlinked file from now on. */
  unlink(ino: number): void {
    const d = this.live.get(ino);
    if (!d) return;
    d.unlinked = true;
    this.live.delete(ino);
  }

  /** Opens (or joins) the session of a file; two opens at once share one session. */
  async start(node: LocalNode, truncate: boolean): Promise<WriteSession> {
    const starting = this.starting.get(node.ino);
    if (starting) await starting.catch(() => undefined);
    const existing = this.live.get(node.ino);
    if (existing) return this.join(existing, truncate);
    const p = this.begin(node, truncate);
    this.starting.set(node.ino, p);
    try {
      return await p;
    } finally {
      if (this.starting.get(node.ino) === p) this.starting.delete(node.ino);
    }
  }

  private async join(d: WriteSession, truncate: boolean): Promise<WriteSession> {
    d.writers++;
    if (truncate) {
      try {
        await this.change(d, (f) => this.cut(d, f, 0));
      } catch (err) {
        await this.leave(d);
        this.endIfUnread(d);
        throw err;
      }
    }
    return d;
  }

  private async begin(node: LocalNode, truncate: boolean): Promise<WriteSession> {
    const { log, staging } = this.o;
    const queued = log.latestContent(node.ino);
    const queuedBase = !truncate && queued?.base ? await this.o.manifests.at(queued.base.sid, queued.base.version) : undefined;
    // The queued file stays on disk until copied, even if its commit lands meanwhile (else: ENOENT, i.e. EIO).
    const copyFrom = !truncate && queued ? queued.staging : undefined;
    if (copyFrom) log.useStaging(copyFrom);
    let file: StagingFile;
    try {
      file = await staging.create();
    } catch (err) {
      if (copyFrom) await log.releaseStaging(copyFrom);
      throw err;
    }
    const d: WriteSession = {
      ino: node.ino,
      file,
      size: 0,
      mtime: queued?.mtime ?? node.mtime,
      baseVersion: queued ? queued.baseVersion : node.headVersion,
      sid: node.sid,
      writers: 1,
      handles: new Set(),
      // A truncating open is a change (an empty file commits); an open that only copies is not.
      gen: truncate ? 1 : 0,
      queuedGen: 0,
      changing: 0,
      idle: [],
      ended: false,
      unlinked: false,
    };
    try {
      if (copyFrom) {
        const src = await open(copyFrom, 'r');
        try {
          // Where this mount wrote the queued file, only its data ranges are read (holes are not even read).
          await staging.copyInto(file, src, queued!.present ?? this.stagedExtents.get(copyFrom)?.list, queued!.size);
        } finally {
          await src.close();
        }
        d.size = queued!.size;
        if (queuedBase && queued!.base) {
          d.base = { manifest: queuedBase, sid: queued!.base.sid, limit: queued!.base.limit };
          if (queued!.changed) d.changed = [...queued!.changed];
        }
      } else if (!truncate && node.headVersion > 0 && node.size > 0 && node.sid !== null) {
        // Nothing is downloaded: the version's bytes come in where they are read, or at the commit.
        const manifest = await this.o.manifests.of(node);
        await file.fh.truncate(manifest.size);
        d.size = manifest.size;
        d.base = { manifest, sid: node.sid, limit: manifest.size };
      }
    } catch (err) {
      await staging.drop(file);
      throw err;
    } finally {
      if (copyFrom) await log.releaseStaging(copyFrom);
    }
    if (truncate) d.mtime = Date.now();
    this.live.set(node.ino, d);
    return d;
  }

  /**
   * Brings the version's bytes of [from, to) into the session's file where it holds none. Runs
   * alone: writes and truncates in progress finish first, new ones wait for it.
   */
  private async fill(d: WriteSession, from: number, to: number): Promise<void> {
    for (;;) {
      if (!d.base) return;
      if (d.filling) await d.filling.catch(() => undefined);
      else if (d.changing > 0) await new Promise<void>((wake) => d.idle.push(wake));
      else break;
    }
    const f = d.file;
    const { staging, source } = this.o;
    const base = d.base;
    // A queued file's room passed to its log entry; filling it in holds none of its own.
    const reserve = f.queued ? undefined : (bytes: number) => staging.reserveMore(f, bytes);
    const p = staging.using(f, () => fillFromBase({ fh: f.fh, present: f.extents, base: base.manifest, limit: base.limit, source, ...(reserve && { reserve }) }, from, to));
    d.filling = p.finally(() => (d.filling = undefined));
    await d.filling;
  }

  /** Reads the session's live content (whatever a close queued meanwhile); its file stays open until the read is done. */
  async read(d: WriteSession, buf: Buffer, length: number, position: number): Promise<number> {
    if (d.base) await this.fill(d, position, position + length);
    const f = d.file;
    return this.o.staging.using(f, () => readFully(f.fh, buf, length, position));
  }

  /** Writes at `position`; room is held for the bytes written, not for a hole before them (a sparse file costs what is written). */
  async write(d: WriteSession, bytes: Buffer, position: number): Promise<number> {
    // Scattered writes all over a file opened on a version: take the rest of the version and go on without it.
    if (d.base && (d.file.extents.count ?? Infinity) > MAX_PRESENT_RANGES) {
      await this.fill(d, 0, d.base.limit);
      d.base = undefined;
    }
    return this.change(d, async (f) => {
      d.changed = d.changed ? [Math.min(d.changed[0], position), Math.max(d.changed[1], position + bytes.length)] : [position, position + bytes.length];
      await this.o.staging.reserveUpTo(f, Math.min(f.reserved + bytes.length, Math.max(d.size, position + bytes.length)));
      d.gen++;
      await this.o.staging.write(f, bytes, position);
      d.size = Math.max(d.size, position + bytes.length);
      d.mtime = Date.now();
      return bytes.length;
    });
  }

  truncate(d: WriteSession, size: number): Promise<void> {
    return this.change(d, (f) => this.cut(d, f, size));
  }

  /** `fsync`: the session's file reaches the disk. */
  sync(d: WriteSession): Promise<void> {
    const f = d.file;
    return this.o.staging.using(f, () => f.fh.sync());
  }

  private async cut(d: WriteSession, f: StagingFile, size: number): Promise<void> {
    d.gen++;
    // What the cut takes off the version is gone, also if the file grows again (it reads zeros).
    if (d.base) d.base.limit = Math.min(d.base.limit, size);
    // Growing leaves a hole, which takes no disk: nothing to reserve. Shrinking gives back what is cut off.
    await this.o.staging.cut(f, size);
    d.size = size;
    d.mtime = Date.now();
  }

  /** A writer leaves the session; the last one queues what is not queued yet and ends it. */
  async leave(d: WriteSession): Promise<void> {
    if (--d.writers > 0) return;
    try {
      await this.snapshot(d);
    } finally {
      // Unless a new open joined while it was being queued: then the session goes on.
      if (d.writers === 0 && !d.ended) {
        d.ended = true;
        if (this.live.get(d.ino) === d) this.live.delete(d.ino);
        // Removed from the tree while open (deleted elsewhere): let it go unless a save of it is queued.
        this.o.tree.forget(d.ino);
        const f = d.file;
        // Nothing of it queued (unchanged, unlinked, or the log refused it): it goes.
        if (!f.queued) {
          this.o.staging.giveBack(f);
          await rm(f.path, { force: true });
        }
      }
    }
  }

  /** An ended session read by no handle any more lets its file go. */
  endIfUnread(d: WriteSession): void {
    if (d.ended && d.handles.size === 0) this.o.staging.retire(d.file);
  }

  /** Sets the mtime a session's next snapshot carries; true if that covers it (changes not queued yet). */
  async setMtime(d: WriteSession, ms: number): Promise<boolean> {
    await d.snapshotting?.catch(() => undefined);
    d.mtime = ms;
    return d.gen !== d.queuedGen;
  }

  /**
   * Queues the session's content as it is now (a durable log entry, invariant 5) without ending
   * it. Waits for writes and truncates in progress, and holds new ones until it is queued; those
   * then go to a copy (`change`), so the queued bytes never change. Nothing to do when nothing
   * changed since the last snapshot. Snapshots of one session run one after another.
   */
  snapshot(d: WriteSession): Promise<void> {
    const p = (d.snapshotting ?? Promise.resolve()).catch(() => undefined).then(() => this.queueSnapshot(d));
    d.snapshotting = p;
    const done = () => {
      if (d.snapshotting === p) d.snapshotting = undefined;
    };
    p.then(done, done);
    return p;
  }

  private async queueSnapshot(d: WriteSession): Promise<void> {
    while (d.changing > 0) await new Promise<void>((wake) => d.idle.push(wake));
    if (d.gen === d.queuedGen || d.unlinked) return;
    const f = d.file;
    const gen = d.gen;
    // Kept for a copy of this queued content (the next writer's) until the entry leaves the log.
    this.stagedExtents.set(f.path, f.extents);
    // From here on the file is the log's: the next change copies it.
    f.queued = true;
    try {
      // Invariant 5: queued on disk before close returns. The reservation passes to the log entry.
      const { size, mtime, base, changed } = d;
      const lazy = base && { base: { sid: base.sid, version: base.manifest.version, limit: base.limit }, present: (f.extents.list ?? []).map(([a, b]): [number, number] => [a, b]), ...(changed && { changed: [...changed] as [number, number] }) };
      // The node became another server node meanwhile (a rename over a file landed): this content is on top of the version that made.
      const now = this.o.tree.node(d.ino)?.sid ?? null;
      const baseVersion = d.sid !== null && now !== d.sid ? this.o.log.own(d.ino) : d.baseVersion;
      await this.o.log.append({ kind: 'content', ino: d.ino, staging: f.path, size, mtime, baseVersion, ...lazy }, () => this.o.tree.byKernel(() => this.o.tree.patch(d.ino, { size, mtime })), f.reserved);
    } catch (err) {
      f.queued = false;
      throw err;
    }
    f.reserved = 0;
    d.queuedGen = gen;
  }

  /**
   * Runs a write or truncate of the session: after a snapshot being queued, on a file of the
   * session's own (the first change after a snapshot copies the queued file into a new one).
   */
  private async change<T>(d: WriteSession, fn: (f: StagingFile) => Promise<T>): Promise<T> {
    for (;;) {
      if (d.snapshotting) await d.snapshotting.catch(() => undefined);
      else if (d.filling) await d.filling.catch(() => undefined);
      else if (d.file.queued) {
        d.copying ??= this.unqueue(d).finally(() => (d.copying = undefined));
        await d.copying;
      } else break;
    }
    const f = d.file;
    d.changing++;
    try {
      return await this.o.staging.using(f, () => fn(f));
    } finally {
      if (--d.changing === 0) for (const wake of d.idle.splice(0)) wake();
    }
  }

  /** The session goes on in a copy of its queued file (which stays as the log has it). */
  private async unqueue(d: WriteSession): Promise<void> {
    const { staging } = this.o;
    const from = d.file;
    const to = await staging.create();
    try {
      await staging.using(from, () => staging.copyInto(to, from.fh, from.extents.list, d.size));
    } catch (err) {
      await staging.drop(to);
      throw err;
    }
    d.file = to;
    staging.retire(from);
  }
}
