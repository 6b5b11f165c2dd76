export interface BackoffOptions {
  /** First delay (ms). */
  minMs: number;
  /** Delays double per attempt up to this (ms). */
  maxMs: number;
  /** Each delay is spread by ±this fraction, so many clients do not retry in lockstep. */
  jitter: number;
  /** Source of randomness in [0, 1) (tests pin it). */
  random?: () => number;
}

/** Exponential backoff with jitter: minMs, 2×, 4×… up to maxMs, each ±jitter; `reset` starts over. */
export class Backoff {
  private attempt = 0;

  constructor(private readonly opts: BackoffOptions) {}

  next(): { delayMs: number; attempt: number } {
    const base = Math.min(this.opts.maxMs, this.opts.minMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    const spread = 1 + this.opts.jitter * (2 * (this.opts.random ?? Math.random)() - 1);
    return { delayMs: Math.max(0, Math.round(base * spread)), attempt: this.attempt };
  }

  reset(): void {
    this.attempt = 0;
  }
}
