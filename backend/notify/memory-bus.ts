import type { Logger } from 'pino';
import { deliver, type BusEvent, type BusListener, type ChangeHint, type NotifyBus, type Revocation } from './bus.js';

/** One backend process: hints go straight from the journal to this process's gateway. */
export class MemoryBus implements NotifyBus {
  private readonly listeners = new Set<BusListener>();
  private closed = false;

  constructor(private readonly log: Logger) {}

  publish(hint: ChangeHint): void {
    if (hint.userIds.length > 0) this.deliver({ kind: 'change', ...hint });
  }

  revoke(revocation: Revocation): void {
    this.deliver({ kind: 'revoke', ...revocation });
  }

  private deliver(event: BusEvent): void {
    if (!this.closed) deliver(this.listeners, event, (err) => this.log.error({ err }, 'notify listener failed'));
  }

  subscribe(listener: BusListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.listeners.clear();
  }
}
