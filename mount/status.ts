/**
 * What a running drive says about itself: `stratus status --json` prints it as is (scripts and the
 * benchmarks read it), the drive answers it on its control socket (mount/control/).
 */
export interface MountStatus {
  pid: number;
  mountpoint: string;
  server: string;
  user: string;
  device: string;
  /** The change-hint channel to the server is open. */
  connected: boolean;
  /** The server answers: the hint channel is open, or the last pull of the change feed succeeded. */
  online: boolean;
  /** The mount started without reaching the server (from its saved tree). */
  startedOffline: boolean;
  pendingCommits: number;
  pendingBytes: number;
  /** ISO time the pending commits last changed (one queued or done; the mount's start before any). */
  pendingChangedAt: string;
  /** Bytes the chunker read and hashed since the mount started (staging files at commit, cached blocks checked). */
  hashedBytes: number;
  /** Block bytes uploaded since the mount started. */
  uploadedBytes: number;
  cursor: string;
  /** ISO time of the last successful pull of the change feed; null before the first. */
  lastSyncAt: string | null;
  /** Why the last pull failed, until one succeeds. */
  lastError: string | null;
  /** ISO time something shown here last changed (a commit queued or done, the link to the server, a pull). */
  updatedAt: string;
}
