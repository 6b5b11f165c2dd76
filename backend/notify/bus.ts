/**
 * The notification seam: after a mutation commits, the journal publishes which users can see its
 * changes; every gateway (this process's and, on PostgreSQL, every other
 * backend process's) hears it and hints those users' WebSocket connections. Engines:
 * memory-bus.ts (one process) and pg-bus.ts (LISTEN/NOTIFY, N processes on one database).
 *
 * Hints are best effort: a lost one costs latency, never correctness, since clients also pull
 * /v1/changes on connect and on reconnect.
 */

/** These users can see changes that just committed. */
export interface ChangeHint {
  userIds: number[];
  /** When the change committed (ms since the epoch), for the notification lag metric; set where it commits, not carried between backends. */
  committedAt?: number;
}

/** A device's token was revoked: its open connections end now, on every backend. */
export interface Revocation {
  userId: number;
  deviceId: number;
}

export type BusEvent =
  | ({ kind: 'change' } & ChangeHint)
  | ({ kind: 'revoke' } & Revocation)
  /** Hints may have been lost (the engine lost its connection for a while): re-read the heads. */
  | { kind: 'resync' };

export type BusListener = (event: BusEvent) => void;

export interface NotifyBus {
  /** Called after the commit; delivers to this process's listeners at once, to others as the engine can. Never throws. */
  publish(hint: ChangeHint): void;
  /** The same for a revocation. */
  revoke(revocation: Revocation): void;
  /** Returns the unsubscribe function. */
  subscribe(listener: BusListener): () => void;
  /** Stops delivering; waits for publishes under way. */
  close(): Promise<void>;
}

/** Calls every listener; one that throws does not keep the event from the others. */
export function deliver(listeners: Iterable<BusListener>, event: BusEvent, onError: (err: unknown) => void): void {
  for (const listener of listeners) {
    try {
      listener(event);
    } catch (err) {
      onError(err);
    }
  }
}
