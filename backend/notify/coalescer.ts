export interface CoalescerOptions {
  /** First window of a burst. */
  minMs: number;
  /** Windows double while the burst goes on, up to this. */
  maxMs: number;
}

/** Changes in one window that make it a burst (the next window doubles); one halves it, none ends it. */
const DENSE = 2;

/**
 * The hints of one connection: an isolated change goes out at once; otherwise at most one
 * message per window, carrying only the newest seq. The window doubles while windows hold several
 * changes (a burst: 1000 commits become a handful of messages), halves after a window with one
 * (a steady trickle of saves, a user saving file after file, is soon pushed within the shortest
 * window again, not held for the longest) and is back at its minimum after a window with none. `send` returns false when the connection cannot take a message now
 * (its buffer is full): the newest seq then goes out at a later window.
 *
 * Nothing is sent before `start(head)`: the first message of a connection is its head.
 */
export class Coalescer {
  private sent = -1;
  private pending = -1;
  private started = false;
  private timer: NodeJS.Timeout | null = null;
  private window: number;
  private closed = false;
  /** Changes offered since the current window opened. */
  private arrivals = 0;

  constructor(
    private readonly send: (seq: number) => boolean,
    private readonly opts: CoalescerOptions,
  ) {
    this.window = opts.minMs;
  }

  /** The newest seq sent so far (-1: none yet). */
  get lastSent(): number {
    return this.sent;
  }

  /** No window open: the next hint goes out at once. */
  get quiet(): boolean {
    return this.timer === null;
  }

  /** Sends `head` (or a newer seq offered meanwhile) as the first message; hints flow from here on. */
  start(head: number): void {
    if (this.closed || this.started) return;
    this.started = true;
    this.pending = Math.max(this.pending, head);
    this.flush();
    this.arm();
  }

  /** Something visible up to `seq` committed. */
  offer(seq: number): void {
    if (this.closed || seq <= Math.max(this.sent, this.pending)) return;
    this.pending = seq;
    this.arrivals++;
    if (!this.started || this.timer) return; // not started yet, or a window is open: goes out when it ends
    this.flush();
    this.arm();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private flush(): void {
    if (this.pending > this.sent && this.send(this.pending)) this.sent = this.pending;
  }

  private arm(): void {
    this.arrivals = 0;
    this.timer = setTimeout(() => this.tick(), this.window);
  }

  private tick(): void {
    this.timer = null;
    if (this.closed) return;
    const arrivals = this.arrivals;
    this.arrivals = 0;
    if (this.pending <= this.sent) {
      this.window = this.opts.minMs; // a quiet window: the burst is over
      return;
    }
    this.flush();
    if (arrivals >= DENSE) this.window = Math.min(this.window * 2, this.opts.maxMs);
    else if (arrivals <= 1) this.window = Math.max(this.opts.minMs, this.window / 2);
    this.arm();
  }
}
