import crypto from 'node:crypto';
import t from 'tap';
import { StratusClient } from '../../protocol/client.js';
import type { DeviceInfo } from '../../protocol/types.js';
import { errorCode, raw, rawJson, type RawResponse } from '../helpers/api-assert.js';
import { randomBlock, startTestBackend, stopOwnCluster, testEngines, type TestBackend, type TestUser } from '../helpers/backend.js';
import { authenticatedRoutes, fillPath, spellings } from '../helpers/routes.js';

/**
 * Authentication (DESIGN §4 invariant 8, §5): device bearer tokens, their creation and
 * revocation, their storage as hashes, the open health check, the config, and the error shape
 * of what has no route.
 */

t.teardown(stopOwnCluster);

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * One request to every route that needs a token, enumerated from the app's router (a route added
 * later is covered without being listed here), plus paths and methods with no route.
 */
function everyRoute(backend: TestBackend, ids: { node: string; hash: string; device: string }): Array<{ method: string; path: string; body?: string; type?: string }> {
  const json = 'application/json';
  const bodies: Record<string, { body: string; type: string }> = {
    'POST /v1/devices': { body: '{"name":"laptop"}', type: json },
    'POST /v1/nodes': { body: JSON.stringify({ parent_id: ids.node, name: 'x', kind: 'file' }), type: json },
    'PATCH /v1/nodes/:id': { body: '{"name":"y"}', type: json },
    'POST /v1/nodes/:id/restore': { body: '{}', type: json },
    'POST /v1/nodes/:id/versions': { body: '{"base_version":0,"blocks":[],"size":0}', type: json },
    'POST /v1/blocks/check': { body: JSON.stringify({ hashes: [ids.hash] }), type: json },
    'PUT /v1/blocks/:hash': { body: 'some bytes', type: 'application/octet-stream' },
  };
  const routes = authenticatedRoutes(backend).map((route) => ({
    method: route.method,
    path: fillPath(route, (param) => sampleParam(param, route.pattern, ids)),
    ...bodies[`${route.method} ${route.pattern}`],
  }));
  return [
    ...routes,
    // No route, or not this method: still nothing without a token.
    { method: 'GET', path: '/v1/no-such-route' },
    { method: 'GET', path: '/v1' },
    { method: 'GET', path: '/' },
    { method: 'GET', path: '/favicon.ico' },
    { method: 'PUT', path: '/v1/nodes/root' },
    { method: 'OPTIONS', path: '/v1/nodes/root' },
    { method: 'POST', path: '/healthz' },
  ];
}

/** A well-formed value for a path parameter of a route. */
function sampleParam(param: string, pattern: string, ids: { node: string; hash: string; device: string }): string {
  if (param === 'hash') return ids.hash;
  if (param === 'v') return '1';
  if (param === 'id') return pattern.startsWith('/v1/devices') ? ids.device : ids.node;
  // A share's public id has the device id's shape.
  if (param === 'share') return ids.device;
  throw new Error(`no sample value for :${param} of ${pattern}: add one`);
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

    const expect401 = (t: { equal(a: unknown, b: unknown, m: string): unknown; match(a: unknown, b: RegExp, m: string): unknown }, res: RawResponse, what: string, method = 'GET') => {
      t.equal(res.status, 401, `${what}: 401`);
      // A HEAD answer has the status and headers of the GET, without its body.
      if (method !== 'HEAD') t.equal(errorCode(res), 'unauthorized', `${what}: error code`);
      t.match(res.headers.get('www-authenticate'), /^Bearer\b/, `${what}: WWW-Authenticate`);
    };

    t.test('every /v1 request without a valid token is 401 with WWW-Authenticate and changes nothing', async (t) => {
      const user = await newUser();
      const root = await user.client.root();
      const device = (await user.client.whoami()).device;
      const block = randomBlock(10);
      const routes = everyRoute(backend, { node: root.id, hash: block.hash, device: String(device.id) });
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
          expect401(t, res, `${route.method} ${route.path}, ${what}`, route.method);
        }
      }
      t.equal(await backend.snapshot(), before);
      // The same requests with the token do reach the routes.
      t.equal((await raw(backend, 'GET', '/v1/nodes/root', { token: user.token })).status, 200);
      // "bearer" is case-insensitive (RFC 9110 §11.1).
      t.equal((await raw(backend, 'GET', '/v1/whoami', { headers: { authorization: `bearer ${user.token}` } })).status, 200);
    });

    t.test('authentication does not depend on how a path is spelled: every route, every spelling, no token: 401, nothing written', async (t) => {
      const user = await newUser();
      const root = await user.client.root();
      const device = (await user.client.whoami()).device;
      // A real block: a PUT that got through would store it (the bypass wrote block files).
      const block = randomBlock(256 * KiB);
      const routes = everyRoute(backend, { node: root.id, hash: block.hash, device: String(device.id) });
      t.ok(routes.some((r) => r.method === 'PUT' && r.path.startsWith('/v1/blocks/')), 'the enumerated table has the block upload');
      const before = await backend.snapshot();
      let tried = 0;
      for (const route of routes) {
        const body = route.method === 'PUT' ? block.bytes : route.body;
        for (const [spelling, path] of [['as declared', route.path] as [string, string], ...spellings(route.path)]) {
          const res = await raw(backend, route.method, path, { body, headers: route.type ? { 'content-type': route.type } : {} });
          tried++;
          t.ok(res.status === 401 || res.status === 404, `${route.method} ${path} (${spelling}) without a token: 401 or 404, got ${res.status}`);
        }
      }
      t.ok(tried > 200, `${tried} requests`);
      t.equal(await backend.snapshot(), before, 'nothing in the database or the block store changed');
      // With a token, the router knows each route under its one spelling only.
      for (const route of routes) {
        const known = authenticatedRoutes(backend).some((r) => r.method === route.method);
        if (!known || route.path === '/v1' || route.path.startsWith('/v1/no-such')) continue;
        for (const [spelling, path] of spellings(route.path)) {
          if (spelling === 'query string') continue;
          const res = await raw(backend, route.method, path, { token: user.token, body: route.method === 'PUT' ? block.bytes : route.body, headers: route.type ? { 'content-type': route.type } : {} });
          t.ok(res.status === 404 || res.status === 405, `${route.method} ${path} (${spelling}) with a token: no route (${res.status})`);
        }
      }
      t.equal(await backend.snapshot(), before, 'no other spelling reached a handler');
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
      for (const id of ['abc', '0', '-1', '1.5', '5', `${device.id}x`, device.id.slice(1), `%20${device.id.slice(1)}`]) {
        const res = await raw(backend, 'DELETE', `/v1/devices/${id}`, { token: user.token });
        t.equal(res.status, 400, `device id ${id}: 400`);
        t.equal(errorCode(res), 'bad_id');
      }
      const unknown = await raw(backend, 'DELETE', '/v1/devices/AAAAAAAAAAAAAAAA', { token: user.token });
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
      for (const path of ['/v1/no-such-route', '/v1', '/v1/nodes/root/children/extra', '/nope', '/', '/V1/config', '/v1/config/', '/v1//config']) {
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
      const post = await raw(backend, 'POST', '/healthz', { token });
      t.equal(post.status, 405);
      t.equal((await raw(backend, 'POST', '/healthz')).status, 401, 'only GET /healthz is public');
      t.type(errorCode(post), 'string');
    });
  });
}
