import { humanSize } from './display.js';

/**
 * What a stopping drive reports, on its stderr and to `stratus unmount` over its control socket
 * (the `unmount` request: progress while it drains, then how it ended).
 */

/** A progress message of the `unmount` request: what still waits to be committed. */
export interface UnmountProgress {
  pending: number;
  bytes: number;
}

/** The result of the `unmount` request, sent once the drive has unmounted. */
export interface UnmountResult {
  /** Commits left queued on disk (they go at the next mount). */
  left: number;
  leftBytes: number;
  /** Everything pending at the stop was committed within the drain timeout. */
  drained: boolean;
  cacheDir: string;
}

/** "N commit(s), 1.2MB": what is pending, as the messages show it (sizes as `ls -h`). */
export function pendingText(count: number, bytes: number): string {
  return `${count} commit(s), ${humanSize(bytes)}`;
}

/** "waiting for N pending commit(s), 1.2MB": the drain's progress line. */
export function waitingText(count: number, bytes: number): string {
  return `waiting for ${count} pending commit(s), ${humanSize(bytes)}`;
}
