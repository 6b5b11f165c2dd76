import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

/**
 * System calls node:fs does not offer, for tests against a mount: utimensat with UTIME_OMIT
 * (`touch -a` / `touch -m` with exact times), mkfifo and mknod. A tiny C program (the same
 * toolchain `npm install` needs for the native modules builds it once, into the temp folder)
 * makes the one call and exits with its errno; posixCall rejects with that errno's name as `code`,
 * as node:fs does. It runs as a child process, so the test's event loop never blocks on a mount.
 */

const run = promisify(execFile);

const SOURCE = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <stdio.h>

/* "omit", "now" or milliseconds since 1970 */
static struct timespec when(const char *s) {
  struct timespec ts = {0, 0};
  if (strcmp(s, "omit") == 0) ts.tv_nsec = UTIME_OMIT;
  else if (strcmp(s, "now") == 0) ts.tv_nsec = UTIME_NOW;
  else {
    long long ms = strtoll(s, NULL, 10);
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000;
  }
  return ts;
}

int main(int argc, char **argv) {
  if (argc < 3) return 255;
  const char *op = argv[1], *path = argv[2];
  int rc = -1;
  if (strcmp(op, "utimensat") == 0 && argc == 5) {
    struct timespec ts[2] = {when(argv[3]), when(argv[4])};
    rc = utimensat(AT_FDCWD, path, ts, 0);
  } else if (strcmp(op, "mkfifo") == 0 && argc == 4) {
    rc = mkfifo(path, (mode_t)strtol(argv[3], NULL, 8));
  } else if (strcmp(op, "mknod") == 0 && argc == 5) {
    rc = mknod(path, (mode_t)strtol(argv[3], NULL, 8), (dev_t)strtoull(argv[4], NULL, 10));
  } else if (strcmp(op, "getxattr") == 0 && argc == 4) {
    /* as getfattr does: ask the size, then the value; print it */
    ssize_t n = getxattr(path, argv[3], NULL, 0);
    if (n >= 0) {
      char *buf = malloc(n + 1);
      n = getxattr(path, argv[3], buf, n);
      if (n >= 0) fwrite(buf, 1, n, stdout);
    }
    rc = n >= 0 ? 0 : -1;
  } else if (strcmp(op, "listxattr") == 0 && argc == 3) {
    char buf[65536];
    ssize_t n = listxattr(path, buf, sizeof buf);
    for (ssize_t i = 0; i < n; i++) putchar(buf[i] ? buf[i] : '\n');
    rc = n >= 0 ? 0 : -1;
  } else if (strcmp(op, "setxattr") == 0 && argc == 5) {
    rc = setxattr(path, argv[3], argv[4], strlen(argv[4]), 0);
  } else if (strcmp(op, "removexattr") == 0 && argc == 4) {
    rc = removexattr(path, argv[3]);
  } else return 255;
  return rc == 0 ? 0 : errno;
}
`;

let built: Promise<string> | undefined;

/** The compiled helper (built on first use, kept in the temp folder under the hash of its source). */
function helper(): Promise<string> {
  return (built ??= (async () => {
    const hash = createHash('sha256').update(SOURCE).digest('hex').slice(0, 16);
    const exe = path.join(os.tmpdir(), `stratus-posix-call-${hash}`);
    try {
      await fs.access(exe, fs.constants.X_OK);
      return exe;
    } catch {
      // not built yet
    }
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-posix-call-build-'));
    try {
      await fs.writeFile(path.join(dir, 'posix-call.c'), SOURCE);
      await run('cc', ['-O1', '-o', path.join(dir, 'posix-call'), path.join(dir, 'posix-call.c')]);
      // Another test file may build it at the same time: rename is atomic, either copy is right.
      await fs.rename(path.join(dir, 'posix-call'), exe);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
    return exe;
  })());
}

const errnoNames = new Map(Object.entries(os.constants.errno).map(([name, n]) => [n, name]));

/**
 * Runs one call (`utimensat PATH ATIME MTIME`, `mkfifo PATH MODE`, `mknod PATH MODE DEV`; modes in
 * octal; `getxattr PATH NAME`, `listxattr PATH`, `setxattr PATH NAME VALUE`, `removexattr PATH
 * NAME`); resolves with what it printed (getxattr: the value; listxattr: the names, one a line).
 */
export async function posixCall(op: 'utimensat' | 'mkfifo' | 'mknod' | 'setxattr' | 'removexattr', ...args: string[]): Promise<void>;
export async function posixCall(op: 'getxattr' | 'listxattr', ...args: string[]): Promise<string>;
export async function posixCall(op: string, ...args: string[]): Promise<string | void> {
  const exe = await helper();
  try {
    return (await run(exe, [op, ...args])).stdout;
  } catch (err) {
    const status = (err as { code?: unknown }).code;
    const code = typeof status === 'number' ? errnoNames.get(status) : undefined;
    if (typeof status !== 'number' || !code) throw err;
    throw Object.assign(new Error(`${code}: ${op} ${args.join(' ')}`), { code, errno: -status });
  }
}
