import fs from 'node:fs/promises';
import path from 'node:path';
import t, { type Test } from 'tap';
import { eventually, mountDrive, remoteNode, run, startServerProcess, tempDir } from '../helpers/drive.js';

/*
 * close(dup(fd)) on a real FUSE mount (issue 9, findings 11 and 12). Closing a duplicate sends a
 * FLUSH while the descriptor stays open: the mount queues what was written so far (invariant 5),
 * and the descriptor must go on reading and writing exactly as on ext4. O_DIRECT takes the page
 * cache out of the way, so every read reaches the mount.
 *
 * Node has no dup(): the descriptor work is a python3 script run as a child process (async, so
 * this process never blocks while the mount — another process — serves it). Each scenario also
 * runs on a local temp folder, shown as a comment: what a local file system answers.
 */

const SCRIPT = String.raw`
import json, mmap, os, sys, threading

def shape(b):
    """Runs of one byte, e.g. 'B×4096+C×4096' (or length and a checksum)."""
    runs, i = [], 0
    while i < len(b) and len(runs) <= 8:
        j = i
        while j < len(b) and b[j] == b[i]:
            j += 1
        runs.append('%s×%d' % (chr(b[i]), j - i))
        i = j
    if len(runs) <= 8:
        return '+'.join(runs) or 'empty'
    return '%d bytes' % len(b)

def filled(data):
    m = mmap.mmap(-1, max(len(data), 1))  # page-aligned memory, as O_DIRECT wants
    m.write(data)
    return m

def pread(fd, n, off):
    m = mmap.mmap(-1, n)
    got = os.preadv(fd, [m], off)
    return bytes(m[:got])

DIRECT = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_DIRECT
mode, path = sys.argv[1], sys.argv[2]
out = {}
if mode == 'stale':
    # Finding 11 as reported: write A, close(dup(fd)), write B at 0 and read there, write C at 4096 and read there.
    fd = os.open(path, DIRECT, 0o644)
    os.pwrite(fd, filled(b'A' * 4096), 0)
    os.close(os.dup(fd))
    os.pwrite(fd, filled(b'B' * 4096), 0)
    out['B at 0'] = shape(pread(fd, 4096, 0))
    os.pwrite(fd, filled(b'C' * 4096), 4096)
    out['C at 4096'] = shape(pread(fd, 4096, 4096))
    os.close(fd)
    # The same with a read right after the close(dup) (anything that reads the file then).
    fd = os.open(path, DIRECT, 0o644)
    os.pwrite(fd, filled(b'A' * 4096), 0)
    os.close(os.dup(fd))
    out['read after close(dup)'] = shape(pread(fd, 4096, 0))
    os.pwrite(fd, filled(b'B' * 4096), 0)
    out['then B at 0'] = shape(pread(fd, 4096, 0))
    os.pwrite(fd, filled(b'C' * 4096), 4096)
    out['then C at 4096'] = shape(pread(fd, 4096, 4096))
    os.close(fd)
elif mode == 'eio':
    # Finding 12: one thread preads 8 KiB at 4096 of a 6,000-byte O_DIRECT file (across EOF) in a
    # loop while another runs close(dup(fd)). Between rounds the descriptor writes new bytes there.
    rounds, reads = int(sys.argv[3]), int(sys.argv[4])
    fd = os.open(path, DIRECT, 0o644)
    content = b''
    errors, wrong, closes = [], [], [0]
    for r in range(rounds):
        content = bytes(((i * 7 + r * 13) % 251) + 1 for i in range(8192))
        os.pwrite(fd, filled(content), 0)
        os.ftruncate(fd, 6000)
        content = content[:6000]
        done = threading.Event()
        def reader():
            try:
                for _ in range(reads):
                    try:
                        got = pread(fd, 8192, 4096)
                        if got != content[4096:]:
                            wrong.append('round %d: %d bytes' % (r, len(got)))
                    except OSError as e:
                        errors.append('round %d: errno %d' % (r, e.errno))
            finally:
                done.set()
        def closer():
            while not done.is_set():
                os.close(os.dup(fd))
                closes[0] += 1
        threads = [threading.Thread(target=reader), threading.Thread(target=closer)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    os.close(fd)
    out = {'reads': rounds * reads, 'failed': errors[:10], 'failedCount': len(errors), 'wrong': wrong[:10], 'wrongCount': len(wrong), 'closesOfDuplicates': closes[0] > 0}
print(json.dumps(out))
`;

/** Runs the script (never blocking this process: the mount is served by another process). */
async function script(mode: string, file: string, ...args: string[]): Promise<Record<string, unknown>> {
  const { stdout } = await run('python3', ['-c', SCRIPT, mode, file, ...args], { timeout: 120_000 });
  return JSON.parse(stdout) as Record<string, unknown>;
}

/** The same scenario on the local temp folder (O_DIRECT may be refused there, e.g. old tmpfs). */
async function locally(t: Test, local: string, mode: string, ...args: string[]): Promise<void> {
  const got = await script(mode, path.join(local, `${mode}.bin`), ...args).catch((err: Error) => `not run: ${err.message.split('\n').slice(-2).join(' ')}`);
  t.comment(`local file system: ${JSON.stringify(got)}`);
}

const server = await startServerProcess(t);
const { token, client } = await server.addUser('dupper');
const local = await tempDir(t, 'dup-local');
const drive = await mountDrive(t, server, token);

/** The head version's bytes on the server, once the commit of `want` bytes landed. */
async function serverHas(p: string, want: Buffer): Promise<Buffer> {
  return eventually(
    `the server to have ${p}`,
    async () => {
      const node = await remoteNode(client, p);
      if (!node || node.head_version === 0) return Buffer.alloc(0);
      const m = await client.manifest(node.id);
      return Buffer.concat(await Promise.all(m.blocks.map((b) => client.getBlock(b.hash))));
    },
    (b) => b.equals(want),
  );
}

t.test('finding 11: after close(dup(fd)) an O_DIRECT descriptor reads its own writes', async (t) => {
  await locally(t, local, 'stale');
  const got = await script('stale', drive.p('stale.bin'));
  t.same(
    got,
    {
      'B at 0': 'B×4096',
      'C at 4096': 'C×4096',
      'read after close(dup)': 'A×4096',
      'then B at 0': 'B×4096',
      'then C at 4096': 'C×4096',
    },
    'every read answers what was written last (ext4: B×4096, then 4096 Cs)',
  );
  const want = Buffer.concat([Buffer.alloc(4096, 'B'), Buffer.alloc(4096, 'C')]);
  t.ok((await fs.readFile(drive.p('stale.bin'))).equals(want), 'the file holds B×4096+C×4096 through the mount');
  t.ok((await serverHas('stale.bin', want)).equals(want), 'and on the server');
  t.notMatch(drive.stderr(), /failed \(errno/, 'the mount logged no failed call');
});

t.test('finding 12: reads across EOF while duplicates are closed never fail and answer the bytes there', async (t) => {
  await locally(t, local, 'eio', '3', '100');
  const got = await script('eio', drive.p('eof.bin'), '5', '100');
  t.same(
    got,
    { reads: 500, failed: [], failedCount: 0, wrong: [], wrongCount: 0, closesOfDuplicates: true },
    'no read failed (EIO) and each answered the 1904 bytes after 4096 (ext4: the same)',
  );
  const bytes = await fs.readFile(drive.p('eof.bin'));
  t.equal(bytes.length, 6000, 'the file holds 6,000 bytes through the mount');
  t.ok((await serverHas('eof.bin', bytes)).equals(bytes), 'and the server has the same bytes');
  t.notMatch(drive.stderr(), /file closed|failed \(errno/, 'the mount logged no failed call ("file closed")');
});
