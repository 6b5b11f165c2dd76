import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import { eventsUrl } from '../../protocol/client.js';
import type { Say } from '../log.js';
import { Backoff } from '../retry/backoff.js';

export interface EventsOptions {
  /** Base URL of the server (http[s]://…); the socket goes to ws[s]://…/v1/events. */
  server: string;
  token: string;
  /** First reconnect delay (ms); doubles per failed attempt up to `maxDelayMs`, ±`jitter`. */
  minDelayMs?: number;
  maxDelayMs?: number;
  jitter?: number;
  /** A connection up this long resets the reconnect delay to `minDelayMs`. */
  stableMs?: number;
  /** No message or ping from the server for this long: the connection is dead (server pings every 30 s). */
  deadAfterMs?: number;
  /** Time allowed for the opening handshake. */
  handshakeMs?: number;
  log?: Say;
}

export interface EventsClientEvents {
  /** The server's change head moved to `seq` (also sent once right after each connect). */
  hint: [seq: number];
  connected: [];
  disconnected: [reason: string];
  /** The next connect attempt starts in `delayMs` (attempt counts failures since the last stable connection). */
  reconnecting: [delayMs: number, attempt: number];
}

/**
 * The change-hint channel of DESIGN §5: a WebSocket to `GET /v1/events` that reports `{seq}` hints.
 * Reconnects forever with exponential backoff and jitter, and treats a connection on which the
 * server stays silent for `deadAfterMs` (it pings every 30 s) as dead. Hints are only hints: the
 * syncer pulls `/v1/changes` on every (re)connect, so a hint lost here costs latency only.
 */
export class EventsClient extends EventEmitter<EventsClientEvents> {
  private ws: WebSocket | undefined;
  private readonly backoff: Backoff;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private deadTimer: NodeJS.Timeout | undefined;
  private stableTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private started = false;
  private lastFailure = '';
  private readonly url: string;
  /** True while a socket is open. */
  connected = false;

  constructor(private readonly opts: EventsOptions) {
    super();
    this.url = eventsUrl(opts.server);
    this.backoff = new Backoff({ minMs: opts.minDelayMs ?? 250, maxMs: opts.maxDelayMs ?? 30_000, jitter: opts.jitter ?? 0.25 });
  }

  /** Opens the first connection (once); failures are retried in the background, never thrown. */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.connect();
  }

  /** Closes the socket and cancels every timer; no event is emitted afterwards. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.clearTimers();
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const ws = this.ws;
    this.ws = undefined;
    this.connected = false;
    if (!ws || ws.readyState === WebSocket.CLOSED) return;
    const gone = new Promise<void>((resolve) => ws.once('close', () => resolve()));
    ws.terminate();
    await gone;
  }

  /**
   * The server is known to answer again (a pull succeeded): try to connect now instead of at the
   * end of the current backoff delay. Does nothing while connected or connecting.
   */
  wake(): void {
    if (this.closed || !this.started || this.ws || !this.reconnectTimer) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.backoff.reset();
    this.connect();
  }

  private connect(): void {
    if (this.closed) return;
    const ws = new WebSocket(this.url, {
      headers: { authorization: `Bearer ${this.opts.token}` },
      handshakeTimeout: this.opts.handshakeMs ?? 10_000,
      perMessageDeflate: false,
    });
    this.ws = ws;
    let failure = '';
    ws.on('open', () => {
      if (this.ws !== ws) return;
      this.connected = true;
      this.lastFailure = '';
      this.armDeadTimer(ws);
      this.stableTimer = setTimeout(() => this.backoff.reset(), this.opts.stableMs ?? 10_000);
      this.opts.log?.(`events: connected to ${this.url}`);
      this.emit('connected');
    });
    ws.on('message', (data) => {
      if (this.ws !== ws) return;
      this.armDeadTimer(ws);
      const seq = parseHint(data);
      if (seq !== undefined) this.emit('hint', seq);
    });
    ws.on('ping', () => {
      if (this.ws === ws) this.armDeadTimer(ws);
    });
    ws.on('unexpected-response', (_req, res) => {
      failure = `HTTP ${res.statusCode ?? '?'}`;
      res.resume();
      ws.terminate();
    });
    ws.on('error', (err) => {
      failure ||= (err as Error).message;
    });
    ws.on('close', (code) => {
      if (this.ws !== ws) return;
      this.ws = undefined;
      this.clearTimers();
      const wasConnected = this.connected;
      this.connected = false;
      const reason = failure || `closed (${code})`;
      if (wasConnected) {
        this.opts.log?.(`events: disconnected: ${reason}`, 'warn');
        this.emit('disconnected', reason);
      } else if (reason !== this.lastFailure) {
        // Log a failure once per kind, not on every attempt of a long outage.
        this.opts.log?.(`events: cannot connect to ${this.url}: ${reason}`, 'warn');
      }
      this.lastFailure = reason;
      this.scheduleReconnect();
    });
  }

  private scheduleReconnect(): void {
    if (this.closed) return;
    const { delayMs, attempt } = this.backoff.next();
    this.emit('reconnecting', delayMs, attempt);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect();
    }, delayMs);
  }

  private armDeadTimer(ws: WebSocket): void {
    clearTimeout(this.deadTimer);
    this.deadTimer = setTimeout(() => {
      if (this.ws !== ws) return;
      this.opts.log?.('events: no message or ping from the server in time; reconnecting', 'warn');
      ws.terminate();
    }, this.opts.deadAfterMs ?? 60_000);
  }

  private clearTimers(): void {
    clearTimeout(this.deadTimer);
    clearTimeout(this.stableTimer);
    this.deadTimer = undefined;
    this.stableTimer = undefined;
  }
}

/** `{"hint": N}` → N; anything else (unknown messages of a newer server) → undefined. */
function parseHint(data: WebSocket.RawData): number | undefined {
  try {
    const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data as ArrayBuffer).toString('utf8');
    const msg = JSON.parse(text) as { hint?: unknown };
    return typeof msg.hint === 'number' && Number.isSafeInteger(msg.hint) && msg.hint >= 0 ? msg.hint : undefined;
  } catch {
    return undefined;
  }
}
