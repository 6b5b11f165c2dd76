import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * Which process serves which mountpoint, so `stratus unmount MOUNTPOINT` can ask that process to
 * drain its pending commits and unmount (a bare fusermount -u would leave commits behind), and
 * what it last said about itself, so `stratus status` can show it.
 */
function registryDir(): string {
  return join(process.env.XDG_RUNTIME_DIR || tmpdir(), 'stratus-mounts');
}

function entryFile(mountpoint: string): string {
  return join(registryDir(), `${encodeURIComponent(resolve(mountpoint))}.pid`);
}

function statusFile(mountpoint: string): string {
  return join(registryDir(), `${encodeURIComponent(resolve(mountpoint))}.status.json`);
}

export async function registerMount(mountpoint: string): Promise<void> {
  await mkdir(registryDir(), { recursive: true });
  await writeFile(entryFile(mountpoint), `${process.pid}\n`);
}

export async function unregisterMount(mountpoint: string): Promise<void> {
  await rm(entryFile(mountpoint), { force: true });
}

/** The pid of the live process serving `mountpoint`, if any. */
export async function mountOwner(mountpoint: string): Promise<number | undefined> {
  const pid = await registeredPid(mountpoint);
  return pid !== undefined && alive(pid) ? pid : undefined;
}

/** The pid an entry names, alive or not. */
export async function registeredPid(mountpoint: string): Promise<number | undefined> {
  let pid: number;
  try {
    pid = Number((await readFile(entryFile(mountpoint), 'utf8')).trim());
  } catch {
    return undefined;
  }
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, run by someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Every mountpoint with a registry entry (live or left by a crash). */
export async function registeredMounts(): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(registryDir());
  } catch {
    return [];
  }
  return names
    .filter((n) => n.endsWith('.pid'))
    .map((n) => decodeURIComponent(n.slice(0, -'.pid'.length)))
    .sort();
}

/** What a running mount says about itself (`stratus status`). */
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
  updatedAt: string;
}

/** Replaces the status file in one step (temp + rename), so a reader never sees half of it. */
export async function writeStatus(status: MountStatus): Promise<void> {
  await mkdir(registryDir(), { recursive: true });
  const file = statusFile(status.mountpoint);
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(status)}\n`);
  await rename(tmp, file);
}

export async function readStatus(mountpoint: string): Promise<MountStatus | undefined> {
  try {
    return JSON.parse(await readFile(statusFile(mountpoint), 'utf8')) as MountStatus;
  } catch {
    return undefined;
  }
}

export async function removeStatus(mountpoint: string): Promise<void> {
  await rm(statusFile(mountpoint), { force: true });
}

/**
 * Writes a mount's status file at most every `delayMs` (changes in between coalesce into one
 * write of the latest state), one write at a time; `close` cancels what is scheduled and removes
 * the file.
 */
export class StatusPublisher {
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly snapshot: () => MountStatus,
    private readonly delayMs = 100,
  ) {}

  /** Something changed: write the status soon. */
  changed = (): void => {
    if (this.closed || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.writeNow();
    }, this.delayMs);
  };

  /** Writes the current status now (after any write in progress). */
  writeNow(): Promise<void> {
    if (this.closed) return this.writing;
    this.writing = this.writing.then(() => (this.closed ? undefined : writeStatus(this.snapshot()))).catch(() => undefined);
    return this.writing;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.writing;
    await removeStatus(this.snapshot().mountpoint);
  }
}
