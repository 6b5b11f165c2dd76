import t from 'tap';
import { nameProblem } from '../../protocol/names.js';

t.test('valid names pass (the DESIGN §3 rules accept ordinary names)', async (t) => {
  for (const name of ['a', 'report.pdf', 'Ünïcødé', '日本語.txt', ' spaced ', '.hidden', '...', 'x'.repeat(255), 'é'.repeat(127)]) {
    t.equal(nameProblem(name), null, JSON.stringify(name));
  }
});

t.test('invalid names are refused with a reason', async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    ['', /empty/],
    ['.', /"\."/],
    ['..', /"\.\."/],
    ['a/b', /"\/"/],
    ['a\0b', /NUL/],
    ['x'.repeat(256), /256 bytes/],
    ['é'.repeat(128), /256 bytes/],
    ['e\u0301', /NFC/],
    ['\uD800', /Unicode/],
    [42, /string/],
  ];
  for (const [name, reason] of cases) t.match(nameProblem(name), reason, JSON.stringify(name));
});
