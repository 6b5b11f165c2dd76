import t from 'tap';
import { Extents } from '../../mount/model/extents.js';

/** A reference: the set of written bytes of a small file, as a bitmap. */
function ranges(bits: boolean[]): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 0; i < bits.length; i++) {
    if (!bits[i]) continue;
    const last = out[out.length - 1];
    if (last && last[1] === i) last[1] = i + 1;
    else out.push([i, i + 1]);
  }
  return out;
}

t.test('appends, overlaps, gaps, truncate', async (t) => {
  const e = new Extents();
  e.add(0, 10);
  e.add(10, 20);
  t.same(e.list, [[0, 20]], 'an append merges');
  e.add(30, 40);
  e.add(25, 26);
  t.same(e.list, [[0, 20], [25, 26], [30, 40]]);
  e.add(19, 31);
  t.same(e.list, [[0, 40]], 'a write across gaps merges everything it touches');
  e.truncate(15);
  t.same(e.list, [[0, 15]]);
  e.truncate(100);
  t.same(e.list, [[0, 15]], 'growing adds a hole, no data');
  e.add(50, 60);
  t.equal(e.bytes, 25);
  e.truncate(0);
  t.same(e.list, []);
});

t.test('matches a bitmap under random writes and truncates', async (t) => {
  let seed = 42;
  const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
  for (let round = 0; round < 50; round++) {
    const e = new Extents();
    let bits: boolean[] = new Array(200).fill(false);
    for (let op = 0; op < 40; op++) {
      if (rnd(8) === 0) {
        const size = rnd(200);
        e.truncate(size);
        bits = bits.map((b, i) => b && i < size);
      } else {
        const s = rnd(200);
        const len = rnd(20);
        e.add(s, Math.min(200, s + len));
        for (let i = s; i < Math.min(200, s + len); i++) bits[i] = true;
      }
    }
    t.same(e.list, ranges(bits), `round ${round}`);
  }
});

t.test('gives up (undefined) past its range limit', async (t) => {
  const e = new Extents();
  for (let i = 0; i < 5000; i++) e.add(i * 10, i * 10 + 1);
  t.equal(e.list, undefined);
  e.add(0, 1);
  t.equal(e.bytes, undefined);
});
