import { LRUCache } from 'lru-cache';
import type { StratusClient } from '../../protocol/client.js';
import { FETCH_DEADLINE_MS, withDeadline } from '../../protocol/deadline.js';
import type { LocalNode } from '../model/local-node.js';
import type { StateStore } from '../state/store.js';
import { PinnedManifest } from '../blocks/pinned-manifest.js';

/**
 * The manifests of the versions files are opened at: in memory (the last few hundred), on disk in
 * the state store (a mount restarted while the server is away still opens what it read), else
 * fetched.
 */
export class Manifests {
  private readonly recent = new LRUCache<string, PinnedManifest>({ max: 512 });

  constructor(
    private readonly client: StratusClient,
    private readonly store?: StateStore,
  ) {}

  /** The manifest of the version the node shows (empty for a file the server has no content of). */
  of(node: LocalNode): Promise<PinnedManifest> {
    if (node.headVersion === 0 || node.sid === null) return Promise.resolve(new PinnedManifest(0, []));
    return this.at(node.sid, node.headVersion);
  }

  /** The manifest of a version if this mount has it (in memory or in the state store), never asking the server. */
  async known(sid: string, version: number): Promise<PinnedManifest | undefined> {
    const key = `${sid}@${version}`;
    const m = this.recent.get(key);
    if (m) return m;
    const saved = await this.store?.getManifest(sid, version).catch(() => undefined);
    if (!saved) return undefined;
    const found = new PinnedManifest(version, saved);
    this.recent.set(key, found);
    return found;
  }

  /** The manifest of version `version` of the file the server knows as `sid`. */
  async at(sid: string, version: number): Promise<PinnedManifest> {
    const key = `${sid}@${version}`;
    let m = this.recent.get(key);
    if (m) return m;
    const saved = await this.store?.getManifest(sid, version).catch(() => undefined);
    if (saved) m = new PinnedManifest(version, saved);
    else {
      const res = await withDeadline(this.client.manifest(sid, version), FETCH_DEADLINE_MS, 'the file\'s manifest');
      m = new PinnedManifest(res.version, res.blocks);
      this.store?.putManifest(sid, res.version, res.blocks).catch(() => undefined);
    }
    this.recent.set(key, m);
    return m;
  }
}
