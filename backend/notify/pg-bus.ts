import crypto from 'node:crypto';
import type { Knex } from 'knex';
import pg from 'pg';
import type { Logger } from 'pino';
import { deliver, type BusListener, type ChangeHint, type NotifyBus, type Revocation } from './bus.js';

/** NOTIFY payloads must stay under 8000 bytes; a hint for more users is split. */
const MAX_PAYLOAD = 7_000;

export interface PgBusOptions {
  /** The database the backend runs on (--db): the LISTEN connection goes there. */
  url: string;
  /** The backend's pool: publishes go through it, so they do not depend on the LISTEN connection. */
  db: Knex;
  log: Logger;
  channel?: string;
  /** How the LISTEN connection shows in pg_stat_activity. */
  applicationName?: string;
  /** Backoff of LISTEN reconnects: starts at min, doubles up to max. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
}

/** What goes over the channel: the publishing process's id, the hints in publish order, and revocations (user, device). */
interface Wire {
  o: string;
  h: Array<{ u: number[] }>;
  r?: Array<{ u: number; d: number }>;
}

/**
 * N backend processes on one PostgreSQL database: a dedicated connection (not from the pool)
 * LISTENs on a channel; publish delivers to this process's listeners at once and `pg_notify`s the
 * others, tagged with this process's id so it ignores its own echo. When the LISTEN connection
 * drops it reconnects with backoff and then tells listeners to resync, since hints sent meanwhile
 * are lost.
 */
export class PgBus implements NotifyBus {
  readonly instanceId = crypto.randomUUID();
  readonly channel: string;
  private readonly listeners = new Set<BusListener>();
  private readonly inFlight = new Set<Promise<void>>();
  private queued: ChangeHint[] = [];
  private queuedRevocations: Revocation[] = [];
  private flushScheduled = false;
  private client: pg.Client | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private reconnectDelay: number;
  private closed = false;

  private constructor(private readonly opts: PgBusOptions) {
    this.channel = opts.channel ?? 'stratus_changes';
    this.reconnectDelay = this.minDelay;
  }

  /** Connects and LISTENs before returning, so a started server hears every later change. */
  static async start(opts: PgBusOptions): Promise<PgBus> {
    const bus = new PgBus(opts);
    await bus.listen();
    return bus;
  }

  private get minDelay(): number {
    return this.opts.reconnectMinMs ?? 100;
  }

  publish(hint: ChangeHint): void {
    if (this.closed || hint.userIds.length === 0) return;
    this.deliverLocal({ kind: 'change', ...hint });
    // One NOTIFY per event-loop turn carries every hint published in it: a burst of commits does
    // not cost a round trip each.
    this.queued.push(hint);
    this.scheduleFlush();
  }

  revoke(revocation: Revocation): void {
    if (this.closed) return;
    this.deliverLocal({ kind: 'revoke', ...revocation });
    this.queuedRevocations.push(revocation);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  subscribe(listener: BusListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.listeners.clear();
    await Promise.all(this.inFlight);
    const client = this.client;
    this.client = null;
    if (client) await client.end().catch(() => undefined);
  }

  private deliverLocal(event: Parameters<BusListener>[0]): void {
    deliver(this.listeners, event, (err) => this.opts.log.error({ err }, 'notify listener failed'));
  }

  private flush(): void {
    this.flushScheduled = false;
    if ((this.queued.length === 0 && this.queuedRevocations.length === 0) || this.closed) return;
    const hints = this.queued;
    const revocations = this.queuedRevocations;
    this.queued = [];
    this.queuedRevocations = [];
    for (const payload of encode(this.instanceId, hints, revocations)) {
      const sent = this.opts.db
        .raw('SELECT pg_notify(?, ?)', [this.channel, payload])
        .then(
          () => undefined,
          (err: unknown) => this.opts.log.warn({ err }, 'pg_notify failed: other backend processes miss a change hint'),
        );
      this.inFlight.add(sent);
      void sent.finally(() => this.inFlight.delete(sent));
    }
  }

  private onNotification(msg: pg.Notification): void {
    if (msg.channel !== this.channel || !msg.payload) return;
    let wire: Wire;
    try {
      wire = JSON.parse(msg.payload) as Wire;
    } catch {
      this.opts.log.warn({ payload: msg.payload.slice(0, 200) }, 'ignoring a malformed notification');
      return;
    }
    if (wire.o === this.instanceId || !Array.isArray(wire.h)) return; // our own echo: delivered locally already
    for (const r of Array.isArray(wire.r) ? wire.r : []) {
      if (Number.isSafeInteger(r?.u) && Number.isSafeInteger(r?.d)) this.deliverLocal({ kind: 'revoke', userId: r.u, deviceId: r.d });
    }
    for (const h of wire.h) {
      if (!Array.isArray(h?.u)) continue;
      const userIds = h.u.filter((u) => Number.isSafeInteger(u));
      if (userIds.length > 0) this.deliverLocal({ kind: 'change', userIds });
    }
  }

  private async listen(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.opts.url,
      // A LISTEN connection dropped silently (NAT, failover) is noticed in seconds, not the OS default of hours.
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      application_name: this.opts.applicationName ?? 'stratus-notify',
    });
    client.on('notification', (msg) => this.onNotification(msg));
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${client.escapeIdentifier(this.channel)}`);
    } catch (err) {
      client.removeAllListeners();
      client.on('error', () => undefined);
      await client.end().catch(() => undefined);
      throw err;
    }
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
  }

  private lost(client: pg.Client, err?: Error): void {
    if (this.client !== client) return; // still connecting (listen() handles it) or already replaced
    this.client = null;
    client.removeAllListeners();
    client.on('error', () => undefined);
    void client.end().catch(() => undefined);
    if (this.closed) return;
    this.opts.log.warn({ err }, 'LISTEN connection lost; reconnecting');
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.listen().then(
        () => {
          if (this.closed) return;
          this.reconnectDelay = this.minDelay;
          this.opts.log.info('LISTEN connection restored');
          // Hints published while we were away are lost: have the gateways re-read heads.
          this.deliverLocal({ kind: 'resync' });
        },
        (err: unknown) => {
          this.reconnectDelay = Math.min(this.reconnectDelay * 2, this.opts.reconnectMaxMs ?? 5_000);
          this.opts.log.warn({ err, retryInMs: this.reconnectDelay }, 'LISTEN reconnect failed');
          this.scheduleReconnect();
        },
      );
    }, this.reconnectDelay);
  }
}

/** Payloads for these hints and revocations, each under MAX_PAYLOAD bytes; hints for many users are split. */
export function encode(origin: string, hints: ChangeHint[], revocations: Revocation[] = []): string[] {
  const payloads: string[] = [];
  // Revocations are few (one per revoked device) and small: each payload of them stays far under the limit.
  for (let i = 0; i < revocations.length; i += 200) {
    payloads.push(JSON.stringify({ o: origin, h: [], r: revocations.slice(i, i + 200).map((r) => ({ u: r.userId, d: r.deviceId })) }));
  }
  let batch: Wire['h'] = [];
  let size = 0;
  const overhead = JSON.stringify({ o: origin, h: [] }).length;
  const push = (entry: { u: number[] }) => {
    const len = JSON.stringify(entry).length + 1;
    if (batch.length > 0 && overhead + size + len > MAX_PAYLOAD) {
      payloads.push(JSON.stringify({ o: origin, h: batch }));
      batch = [];
      size = 0;
    }
    batch.push(entry);
    size += len;
  };
  for (const hint of hints) {
    // ~10 bytes per user id: chunks of 500 stay well under the limit.
    for (let i = 0; i < hint.userIds.length; i += 500) push({ u: hint.userIds.slice(i, i + 500) });
  }
  if (batch.length > 0) payloads.push(JSON.stringify({ o: origin, h: batch }));
  return payloads;
}
