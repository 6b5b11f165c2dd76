import crypto from 'node:crypto';
import t from 'tap';
import { StratusClient } from '../../protocol/client.js';
import type { DeviceInfo } from '../../protocol/types.js';
import { errorCode, raw, rawJson, type RawResponse } from '../helpers/api-assert.js';
import { randomBlock, startTestBackend, stopOwnCluster, testEngines, type TestBackend, type TestUser } from '../helpers/backend.js';

/**
 * Authentication (DESIGN §4 invariant 8, §5): device bearer tokens, their creation and
 * revocation, their storage as hashes, the open health check, the config, and the error shape
 * of what has no route.
 */

t.teardown(stopOwnCluster);

const KiB = 1024;
const MiB = 1024 * KiB;

/** One request to every /v1 route (ids need not exist: authentication comes first). */
function everyRoute(ids: { node: string; hash: string; device: number }): Array<{ method: string; path: string; body?: string; type?: string }> {
  const json = 'application/json';
  return [
    { method: 'GET', path: '/v1/config' },
    { method: 'GET', path: '/v1/whoami' },
    { method: 'GET', path: '/v1/devices' },
    { method: 'POST', path: '/v1/devices', body: '{"name":"laptop"}', type: json },
    { method: 'DELETE', path: `/v1/devices/${ids.device}` },
    { method: 'GET', path: '/v1/nodes/root' },
    { method: 'GET', path: `/v1/nodes/${ids.node}` },
    { method: 'GET', path: `/v1/nodes/${ids.node}/children` },
    { method: 'POST', path: '/v1/nodes', body: JSON.stringify({ parent_id: ids.node, name: 'x', kind: 'file' }), type: json },
    { method: 'PATCH', path: `/v1/nodes/${ids.node}`, body: '{"name":"y"}', type: json },
    { method: 'DELETE', path: `/v1/nodes/${ids.node}` },
    { method: 'POST', path: `/v1/nodes/${ids.node}/restore`, body: '{}', type: json },
    { method: 'GET', path: `/v1/nodes/${ids.node}/versions` },
    { method: 'GET', path: `/v1/nodes/${ids.node}/versions/1` },
    { method: 'POST', path: `/v1/nodes/${ids.node}/versions`, body: '{"base_version":0,"blocks":[],"size":0}', type: json },
    { method: 'POST', path: `/v1/nodes/${ids.node}/versions/1/restore` },
    { method: 'POST', path: '/v1/blocks/check', body: JSON.stringify({ hashes: [ids.hash] }), type: json },
    { method: 'PUT', path: `/v1/blocks/${ids.hash}`, body: 'some bytes', type: 'application/octet-stream' },
    { method: 'GET', path: `/v1/blocks/${ids.hash}` },
    { method: 'GET', path: '/v1/changes?since=0' },
    { method: 'GET', path: '/v1/changes/head' },
    // No route, or not this method: still nothing without a token.
    { method: 'GET', path: '/v1/no-such-route' },
    { method: 'GET', path: '/v1' },
    { method: 'PUT', path: '/v1/nodes/root' },
    { method: 'OPTIONS', path: '/v1/nodes/root' },
  ];
}

for (const engine of testEngines()) {
  t.test(`authentication [${engine}]`, async (t) => {
    const backend: TestBackend = await startTestBackend(engine);
    t.teardown(() => backend.close());
    let users = 0;
    const newUser = (): Promise<TestUser> => backend.addUser(`user${++users}`);
    const clientFor = (token: string): StratusClient => {
      const client = new StratusClient({ server: backend.url, token });
      t.teardown(() => client.close());
      return client;
    };

    const expect401 = (t: { equal(a: unknown, b: unknown, m: string): unknown; match(a: unknown, b: RegExp, m: string): unknown }, res: RawResponse, what: string) => {
      t.equal(res.status, 401, `${what}: 401`);
      t.equal(errorCode(res), 'unauthorized', `${what}: error code`);
      t.match(res.headers.get('www-authenticate'), /^Bearer\b/, `${what}: WWW-Authenticate`);
    };

    t.test('every /v1 request without a valid token is 401 with WWW-Authenticate and changes nothing', async (t) => {
      const user = await newUser();
      const root = await user.client.root();
      const device = (await user.client.whoami()).device;
      const block = randomBlock(10);
      const routes = everyRoute({ node: root.id, hash: block.hash, device: device.id });
      const badHeaders: Array<[string, Record<string, string>]> = [
        ['missing', {}],
        ['garbage token', { authorization: 'Bearer garbage' }],
        ['unknown token', { authorization: `Bearer stx_${crypto.randomBytes(32).toString('base64url')}` }],
        ['an over-long token', { authorization: `Bearer stx_${'a'.repeat(5000)}` }],
        ['empty header', { authorization: '' }],
        ['Bearer without token', { authorization: 'Bearer ' }],
        ['another scheme', { authorization: `Token ${user.token}` }],
        ['token without scheme', { authorization: user.token }],
        ['the token\'s hash', { authorization: `Bearer ${crypto.createHash('sha256').update(user.token).digest('hex')}` }],
      ];
      const before = await backend.snapshot();
      for (const [what, headers] of badHeaders) {
        for (const route of routes) {
          const res = await raw(backend, route.method, route.path, { body: route.body, headers: { ...headers, ...(route.type && { 'content-type': route.type }) } });
          expect401(t, res, `${route.method} ${route.path}, ${what}`);
        }
      }
      t.equal(await backend.snapshot(), before);
      // The same requests with the token do reach the routes.
      t.equal((await raw(backend, 'GET', '/v1/nodes/root', { token: user.token })).status, 200);
      // "bearer" is case-insensitive (RFC 9110 §11.1).
      t.equal((await raw(backend, 'GET', '/v1/whoami', { headers: { authorization: `bearer ${user.token}` } })).status, 200);
    });

    t.test('POST /v1/devices creates a second device whose token works', async (t) => {
      const user = await newUser();
      const first = await user.client.whoami();
      const res = await rawJson(backend, 'POST', '/v1/devices', user.token, { name: 'laptop' });
      t.equal(res.status, 201);
      const created = res.json as { device: DeviceInfo; token: string };
      t.match(created.device, { name: 'laptop', revoked_at: null });
      t.type(created.token, 'string');
      t.not(created.token, user.token);
      t.not(created.device.id, first.device.id);
      const second = clientFor(created.token);
      t.same(await second.whoami(), { user: first.user, device: { id: created.device.id, name: 'laptop' } }, 'the new token is the same user on the new device');
      t.same(await second.root(), await user.client.root());
      t.same((await second.devices()).devices.map((d) => d.id), [first.device.id, created.device.id]);
      // A node created through one device is seen through the other.
      const made = await second.create({ parent_id: (await second.root()).id, name: 'from-laptop', kind: 'file' });
      t.same(await user.client.node(made.id), made);
      // Device names are validated and a refused one creates nothing.
      const before = await backend.snapshot();
      for (const body of [{ name: '' }, { name: '   ' }, { name: 'x'.repeat(129) }, { name: 'a\nb' }, { name: 5 }, {}]) {
        const bad = await rawJson(backend, 'POST', '/v1/devices', user.token, body);
        t.equal(bad.status, 400, `device name ${JSON.stringify(body)}: 400`);
        t.equal(errorCode(bad), 'bad_request');
      }
      t.equal(await backend.snapshot(), before);
    });

    t.test('DELETE /v1/devices/:id revokes a device: its next request is 401, the other device still works', async (t) => {
      const user = await newUser();
      const first = (await user.client.whoami()).device;
      const { device, token } = await user.client.createDevice('phone');
      const phone = clientFor(token);
      await phone.root();
      const revoked = await user.client.revokeDevice(device.id);
      t.equal(revoked.id, device.id);
      t.type(revoked.revoked_at, 'string', 'revoked_at is set');
      for (const path of ['/v1/whoami', '/v1/nodes/root', '/v1/changes/head']) expect401(t, await raw(backend, 'GET', path, { token }), `revoked token, GET ${path}`);
      await t.rejects(phone.root(), { status: 401, code: 'unauthorized' });
      t.equal((await user.client.whoami()).device.id, first.id, 'the other device still works');
      const listed = (await user.client.devices()).devices;
      t.equal(listed.find((d) => d.id === device.id)?.revoked_at, revoked.revoked_at);
      t.equal(listed.find((d) => d.id === first.id)?.revoked_at, null);
      // Revoking again is harmless and does not bring it back.
      t.same(await user.client.revokeDevice(device.id), revoked);
      expect401(t, await raw(backend, 'GET', '/v1/whoami', { token }), 'still revoked');
      // A device may revoke itself; its token then stops working at once.
      const { device: tablet, token: tabletToken } = await user.client.createDevice('tablet');
      const self = await rawJson(backend, 'DELETE', `/v1/devices/${tablet.id}`, tabletToken, undefined);
      t.equal(self.status, 200);
      expect401(t, await raw(backend, 'GET', '/v1/whoami', { token: tabletToken }), 'self-revoked');
      // Bad and unknown ids.
      const before = await backend.snapshot();
      for (const id of ['abc', '0', '-1', '1.5']) {
        const res = await raw(backend, 'DELETE', `/v1/devices/${id}`, { token: user.token });
        t.equal(res.status, 400, `device id ${id}: 400`);
        t.equal(errorCode(res), 'bad_id');
      }
      const unknown = await raw(backend, 'DELETE', '/v1/devices/999999', { token: user.token });
      t.equal(unknown.status, 404);
      t.equal(errorCode(unknown), 'not_found');
      t.equal(await backend.snapshot(), before);
    });

    t.test('tokens are stored only as hashes: no stored value holds an issued token', async (t) => {
      const user = await newUser();
      const tokens = [user.token];
      for (const name of ['a', 'b']) tokens.push((await user.client.createDevice(name)).token);
      const rows: Array<Record<string, unknown>> = await backend.db('devices').select();
      t.ok(rows.length >= 3);
      for (const row of rows) {
        for (const value of Object.values(row)) {
          for (const token of tokens) t.not(String(value), token, 'no devices column equals a token');
        }
      }
      // Nor does any table or stored block hold a token, or its secret part, anywhere.
      const everything = await backend.snapshot();
      for (const token of tokens) {
        t.match(token, /^stx_[A-Za-z0-9_-]{43}$/, 'tokens carry 256 random bits');
        t.notOk(everything.includes(token.slice(4)), 'the token appears nowhere in the database');
      }
    });

    t.test('GET /healthz needs no token and answers 200 {ok:true}', async (t) => {
      for (const headers of [{}, { authorization: 'Bearer garbage' }] as Array<Record<string, string>>) {
        const res = await raw(backend, 'GET', '/healthz', { headers });
        t.equal(res.status, 200);
        t.same(res.json, { ok: true });
        t.match(res.headers.get('content-type'), /^application\/json/);
      }
    });

    t.test('GET /v1/config requires a token and returns the chunking parameters and limits', async (t) => {
      expect401(t, await raw(backend, 'GET', '/v1/config'), 'config without a token');
      const { client } = await newUser();
      const config = await client.config();
      t.same(config.chunking, { min: 256 * KiB, avg: 1 * MiB, max: 4 * MiB });
      t.match(config.server, { name: 'stratus', api: 'v1', version: String });
      t.same(config.limits, backend.settings.limits);
      t.match(config.limits, { max_block_size: 4 * MiB, max_json_bytes: Number, max_check_hashes: Number, max_page_size: Number, max_manifest_blocks: Number });
      t.ok(config.limits.max_block_size >= config.chunking.max, 'a block of the largest chunk size can be uploaded');
    });

    t.test('a path or method without a route is a JSON error (404, 405 with Allow)', async (t) => {
      const { token } = await newUser();
      for (const path of ['/v1/no-such-route', '/v1', '/v1/nodes/root/children/extra', '/nope', '/']) {
        const res = await raw(backend, 'GET', path, { token });
        t.equal(res.status, 404, `${path}: 404`);
        t.equal(errorCode(res), 'not_found', `${path}: error shape`);
        t.match(res.headers.get('content-type'), /^application\/json/);
      }
      const wrong = await raw(backend, 'PUT', '/v1/changes/head', { token });
      t.equal(wrong.status, 405);
      t.type(errorCode(wrong), 'string', '405: error shape');
      t.equal(wrong.headers.get('allow'), 'HEAD, GET');
      t.equal((await raw(backend, 'DELETE', '/v1/nodes', { token })).headers.get('allow'), 'POST');
      const post = await raw(backend, 'POST', '/healthz');
      t.equal(post.status, 405);
      t.type(errorCode(post), 'string');
    });
  });
}
