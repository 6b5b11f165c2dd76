import { createHash } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { opBytes, type FsOp, type OpValue, type StatValue } from './fs-ops.js';

/*
 * The child of test/helpers/fs-ops.ts: `node --import tsx fs-ops-child.ts OPS_JSON [ACK_FILE]`.
 * Waits for a line on stdin, then makes the ops in order; before each, prints {"start": i}; after
 * it returned, appends it to ACK_FILE (if given) and prints {"i", "outcome", "ms", "value"?}.
 * Stops at the first failure (exit 1), exit 0 once all are made.
 */

const [opsJson, ackFile] = process.argv.slice(2);
const ops = JSON.parse(opsJson!) as FsOp[];

async function make(op: FsOp): Promise<OpValue | void> {
  switch (op.op) {
    case 'write': {
      const bytes = opBytes(op.seed, op.size);
      const fh = await fs.open(op.path, 'w');
      try {
        for (let done = 0; done < bytes.length; ) done += (await fh.write(bytes, done, bytes.length - done)).bytesWritten;
      } finally {
        await fh.close();
      }
      return undefined;
    }
    case 'mkdir':
      return void (await fs.mkdir(op.path));
    case 'rename':
      return fs.rename(op.from, op.to);
    case 'unlink':
      return fs.unlink(op.path);
    case 'rmdir':
      return fs.rmdir(op.path);
    case 'chmod':
      return fs.chmod(op.path, op.mode);
    case 'utimes':
      return fs.utimes(op.path, op.atimeMs / 1000, op.mtimeMs / 1000);
    case 'stat': {
      const st = await fs.lstat(op.path);
      const type: StatValue['type'] = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'link' : 'other';
      return { type, size: st.size, mode: st.mode & 0o7777, mtimeMs: st.mtimeMs };
    }
    case 'readdir':
      return (await fs.readdir(op.path)).sort();
    case 'read': {
      const bytes = await fs.readFile(op.path);
      return { size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
    }
  }
}

const say = (msg: object) => process.stdout.write(`${JSON.stringify(msg)}\n`);

// The parent says when to go (one line on stdin, or stdin closed).
await new Promise<void>((resolve) => {
  process.stdin.once('data', () => resolve());
  process.stdin.once('end', () => resolve());
});
process.stdin.destroy();

for (const [i, op] of ops.entries()) {
  say({ start: i });
  const started = performance.now();
  try {
    const value = await make(op);
    const ms = Math.round(performance.now() - started);
    if (ackFile) appendFileSync(ackFile, `${JSON.stringify(op)}\n`);
    say({ i, outcome: 'ok', ms, ...(value !== undefined && { value }) });
  } catch (err) {
    const ms = Math.round(performance.now() - started);
    say({ i, outcome: (err as NodeJS.ErrnoException).code ?? String(err), ms });
    process.exitCode = 1;
    break;
  }
}
