import crypto from 'node:crypto';
import t from 'tap';
import { startTestBackend, type TestBackend } from '../helpers/backend.js';
import { drained, readAll, SMALL_CHUNKING, switchableDevice, writeAll } from '../helpers/vfs.js';

/**
 * Trash as items through the drive (DESIGN §3): `rm -r` on one device is one trash item at the
 * server (the drive sends the files' deletes, then the folders'), and restoring it brings the whole
 * subtree back, byte-identical, on every device of the user — the one that deleted it too.
 */

let backend: TestBackend;
t.before(async () => {
  backend = await startTestBackend('sqlite', { chunking: SMALL_CHUNKING });
});
t.teardown(() => backend?.close());

t.test('rm -r of a folder on one device, restored from the trash: the whole subtree is back on both devices', async (t) => {
  const user = await backend.addUser('trash-devices');
  const a = await switchableDevice(t, backend.url, user.token, 'laptop');
  const b = await switchableDevice(t, backend.url, user.token, 'desk');
  const files: Record<string, Buffer> = {
    '/Projects/plan.txt': crypto.randomBytes(5000),
    '/Projects/src/main.c': crypto.randomBytes(300_000),
    '/Projects/src/lib/util.c': crypto.randomBytes(70),
  };
  await a.h.vfs.mkdir('/Projects', 0o755);
  await a.h.vfs.mkdir('/Projects/src', 0o755);
  await a.h.vfs.mkdir('/Projects/src/lib', 0o755);
  for (const [p, bytes] of Object.entries(files)) await writeAll(a.h.vfs, p, bytes, { create: true });
  await drained(a.h.queue);
  await b.h.pull();
  for (const [p, bytes] of Object.entries(files)) t.ok((await readAll(b.h.vfs, p)).equals(bytes), `the desk reads ${p}`);

  // What rm -r does: every file, then the folders bottom-up.
  for (const p of Object.keys(files)) await a.h.vfs.unlink(p);
  for (const d of ['/Projects/src/lib', '/Projects/src', '/Projects']) await a.h.vfs.rmdir(d);
  await drained(a.h.queue);
  await b.h.pull();
  t.notOk((await b.h.vfs.readdir('/')).names.includes('Projects'), 'gone on the desk');

  const trash = await user.client.trash();
  t.same(trash.items.map((i) => [i.name, i.path, i.files]), [['Projects', '/Projects', 3]], 'one trash item, holding the three files');
  await user.client.restore(trash.items[0]!.id);
  for (const dev of [a, b]) {
    await dev.h.pull();
    for (const [p, bytes] of Object.entries(files)) t.ok((await readAll(dev.h.vfs, p)).equals(bytes), `${dev.h.opts.device} reads ${p} again, byte-identical`);
  }
  t.same((await user.client.trash()).items, [], 'the trash is empty');
});
