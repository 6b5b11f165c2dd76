import t from 'tap';
import { errorCode, raw } from '../helpers/api-assert.js';
import { commitRandomBlocks, startTestBackend, stopOwnCluster, testEngines } from '../helpers/backend.js';

/*
 * Issue 9, findings 5 and 7: every number and id a request names in its path or query has one
 * spelling (`versions/1e3` is not version 1000, `devices/0x5` not device 5: 400, nothing
 * changed), and no reply exposes a global counter (user and device ids are opaque).
 */

t.teardown(stopOwnCluster);

/** Spellings of the number `n` that are not its one decimal spelling. */
function looseSpellings(n: number): string[] {
  return [`0x${n.toString(16)}`, `${n}.0`, `%20${n}`, `${n}%20`, `+${n}`, `${n}e0`, `0${n}`, `00${n}`, `${n}.`, `%2B${n}`, `${n}n`, '%20', ''];
}

for (const engine of testEngines()) {
  t.test(`strict parameters and opaque ids [${engine}]`, async (t) => {
    const backend = await startTestBackend(engine);
    t.teardown(() => backend.close());
    const alice = await backend.addUser('alice');
    const root = await alice.client.root();
    const file = await alice.client.create({ parent_id: root.id, name: 'f', kind: 'file' });
    for (let v = 0; v < 2; v++) await commitRandomBlocks(alice.client, file.id, v, [100]);

    t.test('a version number, page limit, cursor or if_version in any other spelling is 400 and changes nothing', async (t) => {
      const cases: Array<{ method: string; path: (n: string) => string; n: number; ok: number }> = [
        { method: 'GET', path: (n) => `/v1/nodes/${file.id}/versions/${n}`, n: 1, ok: 200 },
        { method: 'POST', path: (n) => `/v1/nodes/${file.id}/versions/${n}/restore`, n: 1, ok: 201 },
        { method: 'GET', path: (n) => `/v1/nodes/${file.id}/versions?before=${n}`, n: 2, ok: 200 },
        { method: 'GET', path: (n) => `/v1/nodes/${file.id}/versions?limit=${n}`, n: 1, ok: 200 },
        { method: 'GET', path: (n) => `/v1/nodes/${root.id}/children?limit=${n}`, n: 5, ok: 200 },
        { method: 'GET', path: (n) => `/v1/changes?since=${n}`, n: 1, ok: 200 },
        { method: 'GET', path: (n) => `/v1/changes?limit=${n}`, n: 5, ok: 200 },
        { method: 'DELETE', path: (n) => `/v1/nodes/${file.id}?if_version=${n}`, n: 1, ok: 409 },
      ];
      const before = await backend.snapshot();
      for (const c of cases) {
        for (const spelling of looseSpellings(c.n)) {
          const res = await raw(backend, c.method, c.path(spelling), { token: alice.token });
          // An empty path segment is another route (404); every other spelling is refused as input.
          const wanted = spelling === '' && !c.path('').includes('?') ? 404 : 400;
          t.equal(res.status, wanted, `${c.method} ${c.path(spelling)}: ${wanted}`);
        }
        const repeated = c.path(String(c.n)).includes('?') ? `${c.path(String(c.n))}&${c.path(String(c.n)).split('?')[1]}` : null;
        if (repeated) t.equal((await raw(backend, c.method, repeated, { token: alice.token })).status, 400, `${repeated}: a parameter given twice is 400`);
      }
      t.equal(await backend.snapshot(), before, 'nothing changed');
      // The one spelling works (the restore and the stale delete run last: they change or refuse).
      for (const c of cases) t.equal((await raw(backend, c.method, c.path(String(c.n)), { token: alice.token })).status, c.ok, `${c.method} ${c.path(String(c.n))}`);
      const head = await raw(backend, 'GET', `/v1/nodes/${file.id}/versions/head`, { token: alice.token });
      t.equal((head.json as { version: number }).version, 3, '"head" names the newest version');
    });

    t.test('a body or query string that is not valid UTF-8 is 400 and stores nothing (no U+FFFD in its place)', async (t) => {
      const before = await backend.snapshot();
      const json = { 'content-type': 'application/json' };
      const invalid = (text: string) => Buffer.concat(text.split('\xff').flatMap((part, i) => (i === 0 ? [Buffer.from(part)] : [Buffer.from([0xff, 0xfe]), Buffer.from(part)])));
      const bodies: Array<[string, string, Buffer | string]> = [
        ['POST', '/v1/nodes', invalid(`{"parent_id":"${root.id}","name":"\xff","kind":"file"}`)],
        ['PATCH', `/v1/nodes/${file.id}`, invalid('{"name":"x\xff"}')],
        ['POST', '/v1/devices', invalid('{"name":"\xff"}')],
        ['POST', '/v1/devices', '{"name":"lone \\ud800 surrogate"}'],
        ['POST', '/v1/nodes', `{"parent_id":"${root.id}","name":"\\udfff","kind":"dir"}`],
      ];
      for (const [method, path, body] of bodies) {
        const res = await raw(backend, method, path, { token: alice.token, body, headers: json });
        t.equal(res.status, 400, `${method} ${path} ${JSON.stringify(body.toString('latin1'))}: 400`);
      }
      for (const query of ['after=%FF', 'after=%C3', 'after=%ED%A0%80', 'limit=1&x=%FE']) {
        const res = await raw(backend, 'GET', `/v1/nodes/${root.id}/children?${query}`, { token: alice.token });
        t.equal(res.status, 400, `?${query}: 400`);
      }
      t.equal(await backend.snapshot(), before, 'nothing stored');
      const ok = await raw(backend, 'GET', `/v1/nodes/${root.id}/children?after=%C3%A9`, { token: alice.token });
      t.equal(ok.status, 200, 'valid percent-encoded UTF-8 is fine');
    });

    t.test('replies carry no global counter: user and device ids are opaque and do not count other users', async (t) => {
      const bob = await backend.addUser('bob');
      const first = await bob.client.whoami();
      // Other users' devices made in between must not show in bob's next device id.
      for (const name of ['a1', 'a2', 'a3']) await alice.client.createDevice(name);
      const second = await bob.client.createDevice('laptop');
      const ids = [first.user.id, first.device.id, second.device.id, (await alice.client.whoami()).user.id];
      for (const id of ids) t.match(id, /^[A-Za-z0-9_-]{16}$/, `${id}: 96 random bits, not a sequence number`);
      t.equal(new Set(ids).size, ids.length, 'all distinct');
      t.same((await bob.client.devices()).devices.map((d) => d.id), [first.device.id, second.device.id]);
      const versions = await alice.client.versions(file.id);
      t.ok(versions.versions.every((v) => v.device_id === null || /^[A-Za-z0-9_-]{16}$/.test(v.device_id)), 'versions name devices by their opaque id');
      // No reply of these routes holds a JSON integer under a key named id or *_id.
      for (const path of ['/v1/whoami', '/v1/devices', `/v1/nodes/${file.id}/versions`, `/v1/nodes/${file.id}/versions/1`]) {
        const res = await raw(backend, 'GET', path, { token: alice.token });
        t.notMatch(res.text, /"(?:[a-z]+_)?id":\s*\d/, `${path}: no integer id`);
      }
      const revoked = await raw(backend, 'DELETE', `/v1/devices/${second.device.id}`, { token: bob.token });
      t.equal(revoked.status, 200, 'a device is revoked by its opaque id');
      t.equal(errorCode(await raw(backend, 'DELETE', `/v1/devices/${second.device.id}`, { token: alice.token })), 'not_found', "and only by its owner");
    });
  });
}
