import { constants as fsc } from 'node:fs';
import { constants } from 'node:os';
import type { Test } from 'tap';

/**
 * The file system a conformance case talks to: POSIX calls over paths inside the drive ("/a/b"),
 * with two implementations — the in-process Vfs (vfs-driver.ts, which plays the part of the
 * kernel's VFS in front of it) and a real FUSE mount of a real server process (mount-driver.ts,
 * node:fs/promises). A failing call rejects with an Error whose `code` is the errno name
 * ('ENOENT', 'EEXIST'…), as node:fs does; `errnoOf` turns a call into that name or 'OK'.
 *
 * Times are milliseconds since 1970. Cases pass whole seconds where they compare exactly (the
 * FUSE binding carries milliseconds; node:fs converts through floating-point seconds).
 */

export interface Stat {
  /** File type and permission bits (S_IFMT | 0o7777). */
  mode: number;
  size: number;
  nlink: number;
  uid: number;
  gid: number;
  atimeMs: number;
  mtimeMs: number;
  ctimeMs: number;
}

export interface Driver {
  /** 'vfs' or 'mount': which implementation (for messages, never for branching in a case). */
  readonly name: string;
  /** The uid and gid the drive shows as every file's owner (the mounting user). */
  readonly owner: { uid: number; gid: number };

  /** open(2) with O_* flags (and O_CREAT's mode): a descriptor number. */
  open(path: string, flags: number, mode?: number): Promise<number>;
  /** One read(2) (position null: at the descriptor's offset, which moves): the bytes it returned. */
  read(fd: number, length: number, position?: number | null): Promise<Buffer>;
  /** One write(2) (position null: at the descriptor's offset; O_APPEND: at the end): bytes written. */
  write(fd: number, data: Buffer, position?: number | null): Promise<number>;
  ftruncate(fd: number, size: number): Promise<void>;
  fstat(fd: number): Promise<Stat>;
  fsync(fd: number): Promise<void>;
  /** close(2): what was written is the drive's (invariant 5) when it returns. */
  close(fd: number): Promise<void>;

  stat(path: string): Promise<Stat>;
  lstat(path: string): Promise<Stat>;
  /** Names in a folder, without '.' and '..', in no particular order. */
  readdir(path: string): Promise<string[]>;
  mkdir(path: string, mode: number): Promise<void>;
  rmdir(path: string): Promise<void>;
  unlink(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  truncate(path: string, size: number): Promise<void>;
  chmod(path: string, mode: number): Promise<void>;
  /** -1 leaves that id unchanged. */
  chown(path: string, uid: number, gid: number): Promise<void>;
  /** utimensat(2): null leaves that time unchanged (UTIME_OMIT). */
  utimes(path: string, atimeMs: number | null, mtimeMs: number | null): Promise<void>;

  /** mknod(2) (mkfifo, devices); S_IFREG makes an empty file. */
  mknod(path: string, mode: number, dev?: number): Promise<void>;
  /** bind(2) of a Unix socket at `path` (closed at once if it succeeds). */
  bindSocket(path: string): Promise<void>;

  /** Waits until every commit the drive has queued is on the server. */
  settle(): Promise<void>;
  /** A fingerprint of the server's state: equal before and after a call that changed nothing there. */
  serverState(): Promise<string>;
}

export const { O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_EXCL, O_TRUNC, O_APPEND, O_DIRECTORY, O_ACCMODE } = {
  ...fsc,
  O_ACCMODE: 3,
};
export const S_IFMT = fsc.S_IFMT;
export const S_IFDIR = fsc.S_IFDIR;
export const S_IFREG = fsc.S_IFREG;
export const S_IFIFO = fsc.S_IFIFO;
export const S_IFCHR = fsc.S_IFCHR;
export const S_IFSOCK = fsc.S_IFSOCK;

/** A longest legal name is 255 bytes (NAME_MAX): this one is 256. */
export const NAME_256 = 'n'.repeat(256);
/** 255 bytes of UTF-8 in 85 characters (each 3 bytes): legal. */
export const NAME_255_UTF8 = '€'.repeat(85);

/** An Error as node:fs makes them: `code` is the errno name. */
export function errnoError(code: string, what: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${what}`), { code, errno: -((constants.errno as Record<string, number>)[code] ?? 0) });
}

/** 'OK' when the call succeeds, else its errno name ('ENOENT'…; 'not an errno: …' for anything else). */
export async function errnoOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code : `not an errno: ${String(err)}`;
  }
}

/** Asserts that `p` fails with errno `code`. */
export async function fails(t: Test, p: Promise<unknown>, code: string, what: string): Promise<void> {
  t.equal(await errnoOf(p), code, `${what} → ${code}`);
}

/** Every byte of the file at `path`, read through one descriptor until EOF. */
export async function readFile(fs: Driver, path: string): Promise<Buffer> {
  const fd = await fs.open(path, O_RDONLY);
  try {
    return await readToEnd(fs, fd, 0);
  } finally {
    await fs.close(fd);
  }
}

/** Reads from `position` until a read returns nothing. */
export async function readToEnd(fs: Driver, fd: number, position: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let pos = position; ; ) {
    const got = await fs.read(fd, 64 * 1024, pos);
    if (got.length === 0) return Buffer.concat(parts);
    parts.push(got);
    pos += got.length;
  }
}

/** Creates (or truncates) `path` with `content` and closes it. */
export async function writeFile(fs: Driver, path: string, content: string | Buffer, mode = 0o644): Promise<void> {
  const fd = await fs.open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
  try {
    const bytes = typeof content === 'string' ? Buffer.from(content) : content;
    if (bytes.length) await fs.write(fd, bytes, 0);
  } finally {
    await fs.close(fd);
  }
}

/** A folder's names, sorted. */
export async function names(fs: Driver, path: string): Promise<string[]> {
  return (await fs.readdir(path)).sort();
}

/**
 * Resolves once the wall clock has passed `ms` (at most a millisecond or two away): a time the
 * drive records next is then strictly later than one it recorded before. Waits for the clock to
 * tick, not for a guessed duration.
 */
export async function clockPast(ms: number): Promise<number> {
  while (Date.now() <= ms) await new Promise((r) => setImmediate(r));
  return Date.now();
}

export const isDir = (s: Stat): boolean => (s.mode & S_IFMT) === S_IFDIR;
export const isFile = (s: Stat): boolean => (s.mode & S_IFMT) === S_IFREG;
