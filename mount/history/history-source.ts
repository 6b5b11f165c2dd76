import { LRUCache } from 'lru-cache';
import type { StratusClient } from '../../protocol/client.js';
import { FETCH_DEADLINE_MS, withDeadline } from '../../protocol/deadline.js';
import { ApiError } from '../../protocol/errors.js';
import type { HistoryEntry, VersionInfo } from '../../protocol/types.js';
import { FsError } from '../model/errors.js';

/** A folder as it was at a time: itself and its children by name. */
export interface PastFolder {
  node: HistoryEntry;
  children: Map<string, HistoryEntry>;
}

/** A time closer to now than this may still gain a change whose transaction was under way when asked. */
const RECENT_MS = 60_000;
/** How long a listing of the past is kept: the past does not change, but a purge removes from it. */
const PAST_TTL_MS = 5 * 60_000;
const RECENT_TTL_MS = 2_000;
/** How long a file's version list is kept (a new version changes the key; a purge of old ones shows within this). */
const VERSIONS_TTL_MS = 30_000;
/** Entries (children, versions) kept in memory across all cached listings. */
const MAX_ENTRIES = 200_000;

/**
 * What the virtual tree asks the server (GET /v1/history, GET /v1/nodes/:id/versions), each listing
 * fetched whole (following pages), once however many callers want it at a time, kept in memory
 * (bounded by entries, for a while: see the TTLs). Like every read the drive cannot answer without
 * the server, a fetch fails after FETCH_DEADLINE_MS without an answer (EIO), at once when the server
 * refuses connections; a failure is not kept. What the server says does not exist (404, or a time it
 * will not answer for: 400) is ENOENT.
 */
export class HistorySource {
  private readonly folders = new LRUCache<string, PastFolder>({ maxSize: MAX_ENTRIES, sizeCalculation: (f) => f.children.size + 1 });
  private readonly versionLists = new LRUCache<string, VersionInfo[]>({ maxSize: MAX_ENTRIES, sizeCalculation: (v) => v.length + 1, ttl: VERSIONS_TTL_MS });
  private readonly inflight = new Map<string, Promise<unknown>>();

  constructor(
    private readonly client: StratusClient,
    private readonly now: () => number = Date.now,
  ) {}

  /** The folder with server id `id` (undefined: the user's root) at `at` (ms since the epoch). */
  folderAt(at: number, id?: string): Promise<PastFolder> {
    const key = `${at} ${id ?? '/'}`;
    const kept = this.folders.get(key);
    if (kept) return Promise.resolve(kept);
    return this.once(key, async () => {
      const children = new Map<string, HistoryEntry>();
      let node: HistoryEntry | undefined;
      let after: string | undefined;
      do {
        const page = await this.client.history(at, id, { after });
        node ??= page.node;
        for (const c of page.children) if (!children.has(c.name)) children.set(c.name, c);
        after = page.next ?? undefined;
      } while (after !== undefined);
      const folder = { node: node!, children };
      this.folders.set(key, folder, { ttl: this.now() - at < RECENT_MS ? RECENT_TTL_MS : PAST_TTL_MS });
      return folder;
    }, `the folder as it was at ${new Date(at).toISOString()}`);
  }

  /** Every version of the file with server id `sid`, oldest first; `head` (its version as the drive has it) keys the list, so a new version is a new list. */
  versions(sid: string, head: number): Promise<VersionInfo[]> {
    const key = `${sid}@${head}`;
    const kept = this.versionLists.get(key);
    if (kept) return Promise.resolve(kept);
    return this.once(key, async () => {
      const all: VersionInfo[] = [];
      let before: number | undefined;
      do {
        const page = await this.client.versions(sid, { before });
        all.push(...page.versions);
        before = page.next ?? undefined;
      } while (before !== undefined);
      all.sort((a, b) => a.version - b.version);
      this.versionLists.set(key, all);
      return all;
    }, "the file's versions");
  }

  /** One fetch per key at a time, within the drive's deadline; the server's "no such thing" as ENOENT. */
  private once<T>(key: string, fetch: () => Promise<T>, what: string): Promise<T> {
    let p = this.inflight.get(key) as Promise<T> | undefined;
    if (!p) {
      p = withDeadline(fetch(), FETCH_DEADLINE_MS, what)
        .catch((err: unknown) => {
          if (err instanceof ApiError && (err.code === 'not_found' || err.status === 400)) throw new FsError('ENOENT', err.message);
          throw err;
        })
        .finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }
}
