import { fails, names, O_APPEND, O_CREAT, O_EXCL, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, readFile, readToEnd, writeFile, isFile } from '../driver.js';
import type { Case } from '../suite.js';

/** open(2) and its flags: O_CREAT, O_EXCL, O_TRUNC, O_APPEND, access modes. */
export const cases: Case[] = [
  {
    name: 'O_CREAT makes an empty regular file with the mode asked for; it is listed at once',
    async run(t, fs) {
      const fd = await fs.open('/new', O_WRONLY | O_CREAT, 0o640);
      const st = await fs.fstat(fd);
      t.ok(isFile(st), 'a regular file');
      t.equal(st.size, 0, 'empty');
      t.equal(st.mode & 0o7777, 0o640, 'mode 0640');
      t.same(await names(fs, '/'), ['new'], 'listed while still open');
      await fs.close(fd);
      t.equal((await fs.stat('/new')).size, 0, 'still empty after close');
      t.same(await readFile(fs, '/new'), Buffer.alloc(0), 'reads as empty');
    },
  },
  {
    name: 'O_CREAT on an existing file opens it as it is (no truncation)',
    async run(t, fs) {
      await writeFile(fs, '/f', 'kept');
      const fd = await fs.open('/f', O_RDWR | O_CREAT, 0o600);
      t.same(await fs.read(fd, 100, 0), Buffer.from('kept'), 'the old content is there');
      await fs.close(fd);
      t.equal((await fs.stat('/f')).mode & 0o7777, 0o644, 'the mode is not changed by the second O_CREAT');
    },
  },
  {
    name: 'O_CREAT|O_EXCL fails with EEXIST on an existing file or folder and changes neither',
    async run(t, fs) {
      await writeFile(fs, '/f', 'untouched');
      await fs.mkdir('/d', 0o755);
      await fails(t, fs.open('/f', O_WRONLY | O_CREAT | O_EXCL | O_TRUNC), 'EEXIST', 'O_EXCL on a file (even with O_TRUNC)');
      await fails(t, fs.open('/d', O_WRONLY | O_CREAT | O_EXCL), 'EEXIST', 'O_EXCL on a folder');
      t.same(await readFile(fs, '/f'), Buffer.from('untouched'), 'the file kept its bytes');
      const fd = await fs.open('/g', O_WRONLY | O_CREAT | O_EXCL, 0o600);
      await fs.close(fd);
      t.same(await names(fs, '/'), ['d', 'f', 'g'], 'O_EXCL on a free name creates it');
    },
  },
  {
    name: 'O_TRUNC empties a file with content; without it the content stays and a write overwrites in place',
    async run(t, fs) {
      await writeFile(fs, '/f', '0123456789');
      let fd = await fs.open('/f', O_WRONLY);
      await fs.write(fd, Buffer.from('ab'), 3);
      await fs.close(fd);
      t.same(await readFile(fs, '/f'), Buffer.from('012ab56789'), 'O_WRONLY without O_TRUNC: rewritten in place');
      fd = await fs.open('/f', O_RDWR | O_TRUNC);
      t.equal((await fs.fstat(fd)).size, 0, 'O_TRUNC: size 0 right after open');
      t.same(await fs.read(fd, 100, 0), Buffer.alloc(0), 'and nothing to read');
      await fs.write(fd, Buffer.from('new'), 0);
      await fs.close(fd);
      t.same(await readFile(fs, '/f'), Buffer.from('new'), 'only what was written after');
      await fs.settle();
      t.same(await readFile(fs, '/f'), Buffer.from('new'), 'also once committed');
    },
  },
  {
    name: 'O_APPEND writes at the end whatever the offset, also after another descriptor grew the file',
    async run(t, fs) {
      await writeFile(fs, '/log', 'one\n');
      const a = await fs.open('/log', O_WRONLY | O_APPEND);
      await fs.write(a, Buffer.from('two\n'), 0);
      const other = await fs.open('/log', O_WRONLY);
      await fs.write(other, Buffer.from('three\n'), 8);
      await fs.close(other);
      await fs.write(a, Buffer.from('four\n'));
      await fs.close(a);
      t.same((await readFile(fs, '/log')).toString(), 'one\ntwo\nthree\nfour\n', 'each append landed at the end');
    },
  },
  {
    name: 'O_RDONLY descriptors cannot write (EBADF); O_RDWR reads its own writes at once',
    async run(t, fs) {
      await writeFile(fs, '/f', 'abc');
      const ro = await fs.open('/f', O_RDONLY);
      await fails(t, fs.write(ro, Buffer.from('x'), 0), 'EBADF', 'write through a read-only descriptor');
      await fs.close(ro);
      const rw = await fs.open('/f', O_RDWR);
      await fs.write(rw, Buffer.from('XYZW'), 1);
      t.same(await readToEnd(fs, rw, 0), Buffer.from('aXYZW'), 'the same descriptor reads what it wrote');
      await fs.close(rw);
      t.same(await readFile(fs, '/f'), Buffer.from('aXYZW'), 'a new descriptor too');
    },
  },
  {
    name: 'a file opened read-only while another descriptor writes sees the writes',
    async run(t, fs) {
      const w = await fs.open('/f', O_RDWR | O_CREAT, 0o644);
      await fs.write(w, Buffer.from('hello'), 0);
      const r = await fs.open('/f', O_RDONLY);
      t.same(await readToEnd(fs, r, 0), Buffer.from('hello'), 'the reader sees what was written before it opened');
      await fs.write(w, Buffer.from(' world'), 5);
      t.same(await readToEnd(fs, r, 0), Buffer.from('hello world'), 'and what is written while it is open');
      await fs.close(w);
      await fs.close(r);
    },
  },
];
