import type { OpLog } from '../oplog/op-log.js';

/**
 * The version of each node this mount's own latest change made. Every local edit of a node is
 * made on top of the previous local one, so a queued save's base is at least this (no false
 * conflict when a file is saved again while its previous save is on the wire), and a delete
 * refused because the head is this mount's own save deletes that save.
 */
export class OwnVersions {
  private readonly versions = new Map<number, number>();

  constructor(private readonly log: OpLog) {}

  get(ino: number): number {
    return this.versions.get(ino) ?? 0;
  }

  /**
   * The node is at `version` by this mount's doing: its queued saves are on top of it now, and a
   * delete logged after it deletes it. Written to the log, so a restart (which forgets this map)
   * does not take this mount's own save for another device's edit.
   */
  async made(ino: number, version: number): Promise<void> {
    this.versions.set(ino, version);
    for (const e of this.log.entriesOf(ino)) {
      if (e.send.inFlight) continue;
      if (e.op.kind === 'content' && e.op.baseVersion < version) e.op = { ...e.op, baseVersion: version };
      else if (e.op.kind === 'delete' && e.op.ifVersion !== undefined && e.op.ifVersion < version) e.op = { ...e.op, ifVersion: version };
      else continue;
      await this.log.update(e);
    }
  }
}
