import t from 'tap';
import { ApiError } from '../../protocol/errors.js';
import { assertValidTarget, MAX_TARGET_BYTES, targetProblem } from '../../protocol/link-target.js';

/** The rule both the server and the drive apply to a link's target: 1–4095 bytes of UTF-8 without NUL, anything else as written. */

t.test('targets are taken as written: relative, absolute, "..", "/" alone, not NFC, up to 4095 bytes', async (t) => {
  for (const target of ['a', '../lib/x.so', '/usr/bin/env', '..', '/', 'a//b/./c/', ' spaced ', 'e\u0301', '😀', 'x'.repeat(MAX_TARGET_BYTES), 'é'.repeat(2047) + 'x']) {
    t.equal(targetProblem(target), null, `${JSON.stringify(target.slice(0, 16))} (${Buffer.byteLength(target)} bytes)`);
  }
});

t.test('other targets are refused with a reason (bad_target at the API)', async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    ['', /empty/],
    ['a\0b', /NUL/],
    ['x'.repeat(4096), /4096 bytes/],
    ['é'.repeat(2048), /4096 bytes/],
    ['a\uDC00', /Unicode/],
    [undefined, /string/],
    [7, /string/],
  ];
  for (const [target, reason] of cases) t.match(targetProblem(target), reason, JSON.stringify(target));
  t.throws(() => assertValidTarget(''), new ApiError('bad_target', 'target must not be empty'));
});
