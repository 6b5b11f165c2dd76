import t, { type Test } from 'tap';
import { conflictedCopyName, isConflictedCopyName } from '../../mount/model/conflict-name.js';
import { nameProblem } from '../../protocol/names.js';

/**
 * The name a losing edit is kept under (DESIGN §4 invariant 6):
 * `name (conflicted copy from DEVICE YYYY-MM-DD HHMMSS).ext`. Every result must also be a name the
 * server accepts (DESIGN §3: NFC, 1–255 UTF-8 bytes, no `/`, no NUL).
 */

// Local time, as the name shows it (the user's clock).
const when = new Date(2024, 0, 2, 3, 4, 5);
const stamp = '2024-01-02 030405';

function valid(t: Test, name: string): void {
  t.equal(nameProblem(name), null, `${JSON.stringify(name.length > 60 ? `${name.slice(0, 60)}…` : name)} is a valid name`);
  t.ok(Buffer.byteLength(name) <= 255, `within 255 bytes (${Buffer.byteLength(name)})`);
}

t.test('the extension stays at the end, after the marker', async (t) => {
  const n = conflictedCopyName('report.txt', 'laptop', when);
  t.equal(n, `report (conflicted copy from laptop ${stamp}).txt`);
  valid(t, n);
});

t.test('a name without an extension gets the marker at the end', async (t) => {
  t.equal(conflictedCopyName('Makefile', 'laptop', when), `Makefile (conflicted copy from laptop ${stamp})`);
  t.equal(conflictedCopyName('trailing.', 'laptop', when), `trailing. (conflicted copy from laptop ${stamp})`, 'a trailing dot is no extension');
});

t.test('a dotfile is all stem: ".bashrc" keeps its leading dot and has no extension', async (t) => {
  t.equal(conflictedCopyName('.bashrc', 'laptop', when), `.bashrc (conflicted copy from laptop ${stamp})`);
  t.equal(conflictedCopyName('.config.json', 'laptop', when), `.config (conflicted copy from laptop ${stamp}).json`, 'a dotfile with an extension');
});

t.test('with several dots only the last one starts the extension: a.tar.gz → ext .gz', async (t) => {
  t.equal(conflictedCopyName('a.tar.gz', 'laptop', when), `a.tar (conflicted copy from laptop ${stamp}).gz`);
});

t.test('a later attempt (the first copy name was taken) is numbered', async (t) => {
  t.equal(conflictedCopyName('f.txt', 'laptop', when, 1), `f (conflicted copy from laptop ${stamp} 2).txt`);
  t.not(conflictedCopyName('f.txt', 'laptop', when, 1), conflictedCopyName('f.txt', 'laptop', when, 2), 'attempts differ');
});

t.test('a device name with "/" (or NUL) cannot break the name: replaced by "_"', async (t) => {
  const n = conflictedCopyName('f.txt', 'work/laptop\0x', when);
  t.equal(n, `f (conflicted copy from work_laptop_x ${stamp}).txt`);
  valid(t, n);
});

t.test('the result stays within 255 UTF-8 bytes: the stem is shortened, marker and extension kept', async (t) => {
  const long = `${'x'.repeat(250)}.txt`;
  const n = conflictedCopyName(long, 'laptop', when);
  valid(t, n);
  t.equal(Buffer.byteLength(n), 255, 'uses the room there is');
  t.match(n, new RegExp(`^x+ \\(conflicted copy from laptop ${stamp}\\)\\.txt$`));

  // Multi-byte stems are cut between characters, never inside one (no lone surrogate, no U+FFFD).
  const emoji = `${'😀'.repeat(70)}.txt`;
  const e = conflictedCopyName(emoji, 'laptop', when);
  valid(t, e);
  t.match(e, new RegExp(`^(😀)+ \\(conflicted copy from laptop ${stamp}\\)\\.txt$`, 'u'), 'whole emoji only');
  const accents = `${'é'.repeat(127)}`;
  valid(t, conflictedCopyName(accents, 'laptop', when));
});

t.test('edge inputs still give a valid name: very long device, very long extension, non-NFC input', async (t) => {
  const dev = conflictedCopyName('f.txt', 'd'.repeat(300), when);
  valid(t, dev);
  t.match(dev, /^f \(conflicted copy from d+ /, 'the device is shortened, the stem kept');

  const ext = conflictedCopyName(`a.${'x'.repeat(250)}`, 'laptop', when);
  valid(t, ext);
  t.match(ext, /conflicted copy from laptop/);

  const nfd = conflictedCopyName('cafe\u0301.txt', 'laptop', when);
  valid(t, nfd);
  t.equal(nfd, `caf\u00e9 (conflicted copy from laptop ${stamp}).txt`);
});

t.test('isConflictedCopyName recognises every name conflictedCopyName makes (user.stratus.state says conflict), and only those', async (t) => {
  const made = [
    conflictedCopyName('report.txt', 'laptop', when),
    conflictedCopyName('README', 'desk', when, 2),
    conflictedCopyName('.bashrc', 'my/phone', when),
    conflictedCopyName('a.tar.gz', 'laptop', when),
    conflictedCopyName('x'.repeat(300), 'laptop', when),
    conflictedCopyName('f.' + 'e'.repeat(250), 'laptop', when),
  ];
  for (const n of made) t.ok(isConflictedCopyName(n), `${n.slice(0, 60)} is a conflicted copy`);
  for (const n of ['report.txt', 'report (copy).txt', 'notes (conflicted copy from me).txt', `x (conflicted copy from laptop ${stamp}) final.txt`]) {
    t.notOk(isConflictedCopyName(n), `${n} is not`);
  }
});
