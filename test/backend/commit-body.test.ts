import t from 'tap';
import { parseCommitBody } from '../../backend/services/commit-body.js';
import { parseCommitBodyOffLoop } from '../../backend/services/commit-body-pool.js';
import { defaultSettings } from '../../backend/settings.js';
import { ApiError } from '../../protocol/errors.js';

/*
 * Issue 9, finding 9: a commit body is checked in one pass (commit-body.ts), and a big one — a
 * 100,000-block manifest is 9 MB of JSON — is parsed in a worker thread, so it does not hold up
 * the server's other requests.
 */

const limits = defaultSettings.limits;
const hash = 'ab'.repeat(32);
const body = (blocks: Array<{ hash: string; size: number }>, extra: Record<string, unknown> = {}) =>
  Buffer.from(JSON.stringify({ base_version: 0, blocks, size: blocks.reduce((s, b) => s + b.size, 0), ...extra }));

t.test('a commit body is reduced to its manifest text, count and distinct blocks', async (t) => {
  const parsed = parseCommitBody(body([{ hash, size: 5 }, { hash: 'cd'.repeat(32), size: 7 }, { hash, size: 5 }], { mtime: 1000, ignored: true }), limits);
  t.same(parsed, {
    base_version: 0,
    size: 17,
    mtime: 1000,
    count: 3,
    manifestJson: JSON.stringify([{ hash, size: 5 }, { hash: 'cd'.repeat(32), size: 7 }, { hash, size: 5 }]),
    distinct: [[hash, 5], ['cd'.repeat(32), 7]],
  });
});

t.test('one block named with two sizes is refused', async (t) => {
  t.throws(() => parseCommitBody(body([{ hash, size: 5 }, { hash, size: 6 }]), limits), { code: 'bad_manifest' });
});

t.test('blocks per byte: past manifest_free_blocks, blocks must average min_bytes_per_block', async (t) => {
  const free = limits.manifest_free_blocks;
  const tiny = (n: number) => Array.from({ length: n }, () => ({ hash, size: 10 }));
  t.equal(parseCommitBody(body(tiny(free)), limits).count, free);
  t.throws(() => parseCommitBody(body(tiny(free + 1)), limits), { code: 'bad_manifest' });
  // A sparse 400 GiB file is 100,000 entries of one 4 MiB block of zeros: a real file, accepted.
  const zeros = Array.from({ length: limits.max_manifest_blocks }, () => ({ hash, size: 4 * 1024 * 1024 }));
  t.equal(parseCommitBody(body(zeros), limits).count, limits.max_manifest_blocks);
});

t.test('a big body is parsed off the event loop: the loop keeps turning while it is parsed', async (t) => {
  const zeros = Array.from({ length: limits.max_manifest_blocks }, () => ({ hash, size: 4 * 1024 * 1024 }));
  const bytes = body(zeros);
  t.ok(bytes.length > 8 * 1024 * 1024, `${(bytes.length / 1e6).toFixed(1)} MB of JSON`);
  let turns = 0;
  let parsing = true;
  const spin = () => {
    if (!parsing) return;
    turns++;
    setImmediate(spin);
  };
  setImmediate(spin);
  const parsed = await parseCommitBodyOffLoop(bytes, limits);
  parsing = false;
  t.equal(parsed.count, limits.max_manifest_blocks);
  t.ok(turns > 1, `the event loop turned ${turns} times during the parse (inline it could not turn at all)`);
  // Refusals come back from the worker as the same ApiError.
  const refused = await parseCommitBodyOffLoop(Buffer.concat([bytes.subarray(0, -1), Buffer.from(',"mtime":-1}')]), limits).catch((e: unknown) => e);
  t.ok(refused instanceof ApiError && refused.status === 400, 'a refusal from the worker is a 400 ApiError');
});
