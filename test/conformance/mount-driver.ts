import fs, { type FileHandle } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { StratusClient } from '../../protocol/client.js';
import { readStatus } from '../../mount/control/client.js';
import { eventually, type Drive } from '../helpers/drive.js';
import { posixCall } from '../helpers/posix-call.js';
import type { Driver, Stat } from './driver.js';

/**
 * The conformance driver over a real FUSE mount (a `stratus mount` process of a `stratus serve`
 * process): node:fs/promises on paths under the mountpoint, so every call goes through the
 * kernel, libfuse, the adapter and the Vfs of another process. What node:fs cannot say
 * (utimensat with UTIME_OMIT) goes through test/helpers/posix-call.ts.
 */
export class MountDriver implements Driver {
  readonly name = 'mount';
  readonly owner = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  private readonly fds = new Map<number, FileHandle>();

  constructor(
    private readonly drive: Drive,
    private readonly client: StratusClient,
  ) {}

  private p(rel: string): string {
    return path.join(this.drive.mountpoint, rel);
  }

  private fh(fd: number): FileHandle {
    const f = this.fds.get(fd);
    if (!f) throw Object.assign(new Error(`EBADF: descriptor ${fd}`), { code: 'EBADF' });
    return f;
  }

  async open(rel: string, flags: number, mode = 0o644): Promise<number> {
    const f = await fs.open(this.p(rel), flags, mode);
    this.fds.set(f.fd, f);
    return f.fd;
  }

  async read(fd: number, length: number, position: number | null = null): Promise<Buffer> {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await this.fh(fd).read(buf, 0, length, position);
    return buf.subarray(0, bytesRead);
  }

  async write(fd: number, data: Buffer, position: number | null = null): Promise<number> {
    return (await this.fh(fd).write(data, 0, data.length, position)).bytesWritten;
  }

  ftruncate = (fd: number, size: number): Promise<void> => this.fh(fd).truncate(size);
  fstat = async (fd: number): Promise<Stat> => toStat(await this.fh(fd).stat());
  fsync = (fd: number): Promise<void> => this.fh(fd).sync();

  async close(fd: number): Promise<void> {
    const f = this.fh(fd);
    this.fds.delete(fd);
    await f.close();
  }

  stat = async (rel: string): Promise<Stat> => toStat(await fs.stat(this.p(rel)));
  lstat = async (rel: string): Promise<Stat> => toStat(await fs.lstat(this.p(rel)));
  readdir = (rel: string): Promise<string[]> => fs.readdir(this.p(rel));
  mkdir = (rel: string, mode: number): Promise<void> => fs.mkdir(this.p(rel), { mode }).then(() => undefined);
  rmdir = (rel: string): Promise<void> => fs.rmdir(this.p(rel));
  unlink = (rel: string): Promise<void> => fs.unlink(this.p(rel));
  rename = (from: string, to: string): Promise<void> => fs.rename(this.p(from), this.p(to));
  truncate = (rel: string, size: number): Promise<void> => fs.truncate(this.p(rel), size);
  chmod = (rel: string, mode: number): Promise<void> => fs.chmod(this.p(rel), mode);

  async utimes(rel: string, atimeMs: number | null, mtimeMs: number | null): Promise<void> {
    if (atimeMs !== null && mtimeMs !== null) return fs.utimes(this.p(rel), atimeMs / 1000, mtimeMs / 1000);
    await posixCall('utimensat', this.p(rel), atimeMs === null ? 'omit' : String(atimeMs), mtimeMs === null ? 'omit' : String(mtimeMs));
  }

  chown = (rel: string, uid: number, gid: number): Promise<void> => fs.chown(this.p(rel), uid, gid);
  mknod = (rel: string, mode: number, dev = 0): Promise<void> => posixCall('mknod', this.p(rel), mode.toString(8), String(dev));

  async bindSocket(rel: string): Promise<void> {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.p(rel), () => resolve());
    });
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /**
   * Every commit queued by the drive is on the server, as its status file (what `stratus status`
   * reads) says in a status written after this call. To be sure one is written even when nothing
   * is pending, the root folder's mtime is set on the server: the drive pulls that change and
   * writes its status.
   */
  async settle(): Promise<void> {
    const since = Date.now();
    await this.client.update((await this.client.root()).id, { mtime: since });
    await eventually(
      'a status of the drive written after settle() began, with no pending commits',
      () => readStatus(this.drive.mountpoint),
      (s) => s !== undefined && Date.parse(s.updatedAt) >= since && s.pendingCommits === 0,
      30_000,
      20,
    );
  }

  /** The server's change cursor: any change to the user's tree moves it. */
  serverState = async (): Promise<string> => `cursor ${(await this.client.changesHead()).cursor}`;

  get openDescriptors(): number {
    return this.fds.size;
  }
}

function toStat(s: import('node:fs').Stats): Stat {
  return { mode: s.mode, size: s.size, nlink: s.nlink, uid: s.uid, gid: s.gid, atimeMs: s.atimeMs, mtimeMs: s.mtimeMs, ctimeMs: s.ctimeMs };
}
