import http from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocket, WebSocketServer } from 'ws';
import { ApiError } from '../../protocol/errors.js';
import { num } from '../db/rows.js';
import { actorFromHeader } from '../middleware/auth.js';
import type { Actor, Backend } from '../services/context.js';
import type { BusEvent, NotifyBus } from './bus.js';
import { Coalescer } from './coalescer.js';

export const EVENTS_PATH = '/v1/events';

/** Clients have nothing to say on this socket; a large frame from one is refused by ws. */
const MAX_CLIENT_FRAME = 4 * 1024;

interface Connection {
  ws: WebSocket;
  actor: Actor;
  coalescer: Coalescer;
  /** Answered the last ping. */
  alive: boolean;
  /** Hints offered to this connection so far: what its messages count. */
  hints: number;
  /** When the oldest change not yet hinted on this connection committed (ms; for the lag metric). */
  unsentSince?: number;
}

/**
 * `GET /v1/events`: WebSocket connections that get `{"hint": N}` messages, N counting this
 * connection's hints (it tells nothing about the journal: cursors are opaque, DESIGN §5). The first
 * message (`{"hint": 0}`) says the connection is ready; after that one whenever a change visible to
 * the caller commits, coalesced per connection (coalescer.ts). Clients pull /v1/changes on a hint
 * and on every connect; a missed hint costs latency, never correctness.
 *
 * Upgrades are authenticated like every /v1 request (before routing, so an unauthenticated caller
 * learns nothing); refusals are HTTP responses with the API's error body.
 */
export class EventsGateway {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_CLIENT_FRAME, perMessageDeflate: false, clientTracking: false });
  private readonly byUser = new Map<number, Set<Connection>>();
  private readonly unsubscribe: () => void;
  private readonly keepalive: NodeJS.Timeout;
  private readonly log: Logger;
  private closed = false;

  constructor(
    private readonly backend: Backend,
    bus: NotifyBus,
    log: Logger,
    /** Told, for each hint sent, how long after the oldest commit it carries (seconds). */
    private readonly onHintLag?: (seconds: number) => void,
  ) {
    this.log = log.child({ component: 'events' });
    this.unsubscribe = bus.subscribe((event) => this.onBusEvent(event));
    this.keepalive = setInterval(() => void this.ping(), backend.settings.events.ping_interval_ms);
    this.keepalive.unref();
  }

  /** The http server's `upgrade` handler. */
  handleUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const onSocketError = (err: Error) => this.log.debug({ err }, 'socket error during upgrade');
    socket.on('error', onSocketError);
    this.upgrade(req, socket, head).then(
      () => socket.off('error', onSocketError),
      (err: unknown) => {
        const apiError = err instanceof ApiError ? err : new ApiError('internal', 'internal server error');
        if (apiError.status >= 500) this.log.error({ err }, 'events upgrade failed');
        refuse(socket, apiError);
      },
    );
  }

  private async upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    // Every upgrade is authenticated first, whatever its path: only then is the path compared,
    // exactly as written (no case folding, no decoding), with the one WebSocket route.
    const actor = await this.authenticate(req.headers.authorization);
    await this.backend.rates.request(actor.userId);
    const pathname = (req.url ?? '/').split('?', 1)[0];
    if (pathname !== EVENTS_PATH) throw new ApiError('not_found', `no route for ${req.method} ${pathname}`);
    if (this.closed) throw new ApiError('unavailable', 'server is shutting down');
    const max = this.backend.settings.events.max_connections_per_user;
    if ((this.byUser.get(actor.userId)?.size ?? 0) >= max) {
      // One user cannot take the server's connection slots from everyone else.
      throw new ApiError('too_many_requests', `at most ${max} event connections per user`, { retry_after_s: 30 });
    }
    if (socket.destroyed) return;
    // ws answers 400 itself to a request that is not a valid WebSocket handshake.
    this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, actor));
  }

  private authenticate(header: string | undefined): Promise<Actor> {
    return actorFromHeader(this.backend.db, header);
  }

  private accept(ws: WebSocket, actor: Actor): void {
    if (this.closed) {
      ws.terminate();
      return;
    }
    const conn: Connection = {
      ws,
      actor,
      alive: true,
      hints: 0,
      coalescer: new Coalescer((n) => this.send(ws, n, conn), {
        minMs: this.backend.settings.events.coalesce_min_ms,
        maxMs: this.backend.settings.events.coalesce_max_ms,
      }),
    };
    let conns = this.byUser.get(actor.userId);
    if (!conns) this.byUser.set(actor.userId, (conns = new Set()));
    conns.add(conn);
    const who = { userId: actor.userId, deviceId: actor.deviceId };
    this.log.debug({ ...who, connections: this.connections() }, 'events connected');

    ws.on('pong', () => (conn.alive = true));
    ws.on('error', (err) => this.log.debug({ ...who, err }, 'events socket error'));
    ws.on('close', (code) => {
      conn.coalescer.close();
      this.forget(conn);
      this.log.debug({ ...who, code, connections: this.connections() }, 'events disconnected');
    });
    // Registered before the first message: a change that commits meanwhile is held by the
    // coalescer and goes out with (or right after) it. A revocation that committed between this
    // upgrade's authentication and its registration is caught here (its bus event found no
    // connection to close).
    this.revokedDevices([actor.deviceId]).then(
      (revoked) => (revoked.size > 0 ? this.endRevoked(conn) : conn.coalescer.start(0)),
      (err: unknown) => {
        this.log.error({ ...who, err }, 'events: the revocation check failed');
        ws.close(1011, 'internal error');
      },
    );
  }

  private send(ws: WebSocket, hint: number, conn: Connection): boolean {
    if (ws.readyState !== WebSocket.OPEN) return true; // closing: nothing to deliver any more
    if (ws.bufferedAmount > this.backend.settings.events.max_buffered_bytes) return false;
    ws.send(JSON.stringify({ hint }));
    if (conn.unsentSince !== undefined) this.onHintLag?.(Math.max(0, Date.now() - conn.unsentSince) / 1000);
    conn.unsentSince = undefined;
    return true;
  }

  private forget(conn: Connection): void {
    const conns = this.byUser.get(conn.actor.userId);
    conns?.delete(conn);
    if (conns?.size === 0) this.byUser.delete(conn.actor.userId);
  }

  private onBusEvent(event: BusEvent): void {
    if (this.closed) return;
    if (event.kind === 'change') {
      for (const userId of event.userIds) {
        for (const conn of this.byUser.get(userId) ?? []) {
          conn.unsentSince ??= event.committedAt ?? Date.now();
          conn.coalescer.offer(++conn.hints);
        }
      }
    } else if (event.kind === 'revoke') {
      for (const conn of this.byUser.get(event.userId) ?? []) if (conn.actor.deviceId === event.deviceId) this.endRevoked(conn);
    } else {
      this.resync();
    }
  }

  /** Hints may have been lost: every connection gets one (its client pulls, and finds what it missed). */
  private resync(): void {
    for (const conn of this.all()) conn.coalescer.offer(++conn.hints);
  }

  /** Keepalive: drops connections that missed the last ping, and those of devices revoked since they connected. */
  private async ping(): Promise<void> {
    const all = this.all();
    for (const conn of all) {
      if (!conn.alive) {
        this.log.debug({ userId: conn.actor.userId, deviceId: conn.actor.deviceId }, 'events: no pong, dropping');
        conn.ws.terminate();
        continue;
      }
      conn.alive = false;
      conn.ws.ping();
    }
    try {
      const revoked = await this.revokedDevices([...new Set(all.map((c) => c.actor.deviceId))]);
      for (const conn of all) if (revoked.has(conn.actor.deviceId)) this.endRevoked(conn);
    } catch (err) {
      if (!this.closed) this.log.warn({ err }, 'events: revocation check failed');
    }
  }

  /** Closes a revoked device's connection at once: it hears nothing more (1008 policy violation). */
  private endRevoked(conn: Connection): void {
    conn.coalescer.close();
    this.forget(conn);
    conn.ws.close(1008, 'token revoked');
  }

  private async revokedDevices(deviceIds: number[]): Promise<Set<number>> {
    const revoked = new Set<number>();
    for (let i = 0; i < deviceIds.length && !this.closed; i += 500) {
      const rows: Array<{ id: unknown }> = await this.backend.db('devices').whereIn('id', deviceIds.slice(i, i + 500)).whereNotNull('revoked_at').select('id');
      for (const row of rows) revoked.add(num(row.id));
    }
    return revoked;
  }

  private all(): Connection[] {
    return [...this.byUser.values()].flatMap((conns) => [...conns]);
  }

  connections(): number {
    let n = 0;
    for (const conns of this.byUser.values()) n += conns.size;
    return n;
  }

  /** Drops every connection server-side, at once (clients see an abnormal close and reconnect). */
  disconnectAll(): void {
    for (const conn of this.all()) conn.ws.terminate();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.keepalive);
    this.unsubscribe();
    for (const conn of this.all()) {
      conn.coalescer.close();
      conn.ws.terminate();
    }
    this.byUser.clear();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }
}

/** Answers an upgrade request with the API's error shape and closes the socket. */
function refuse(socket: Duplex, err: ApiError): void {
  if (socket.destroyed) return;
  const body = JSON.stringify(err.toBody());
  const head = [
    `HTTP/1.1 ${err.status} ${http.STATUS_CODES[err.status] ?? 'Error'}`,
    'Content-Type: application/json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
    ...(err.status === 401 ? ['WWW-Authenticate: Bearer realm="stratus"'] : []),
    ...(typeof err.extra.retry_after_s === 'number' ? [`Retry-After: ${err.extra.retry_after_s}`] : []),
  ];
  socket.once('finish', () => socket.destroy());
  socket.end(`${head.join('\r\n')}\r\n\r\n${body}`);
}
