import fc from 'fast-check';
import t from 'tap';
import { raw, type RawResponse } from '../helpers/api-assert.js';
import { commitRandomBlocks, randomBlock, startTestBackend, stopOwnCluster, testEngines } from '../helpers/backend.js';
import { authenticatedRoutes, fillPath, type Route } from '../helpers/routes.js';

/*
 * Issue 9: a property-based fuzz test of the JSON API. Requests are generated over every route of
 * the app's router (enumerated, so new routes are fuzzed too): path parameters, query strings,
 * bodies (shaped like the route's, or junk, or bytes that are not UTF-8), content types and
 * tokens. The properties: the server only ever answers 2xx or 4xx (never a 5xx, never a hang),
 * and a 4xx changes nothing in the database or the block store. Bounded in time per engine
 * (STRATUS_FUZZ_MS, default 12 s); a failure prints fast-check's seed and the shrunk request.
 */

t.teardown(stopOwnCluster);

const BUDGET_MS = Number(process.env.STRATUS_FUZZ_MS ?? 12_000);

interface Request {
  route: Route;
  params: Record<string, string>;
  query: Array<[string, string]>;
  body: Buffer | undefined;
  contentType: string | undefined;
  auth: 'alice' | 'bob' | 'none' | 'garbage';
}

for (const engine of testEngines()) {
  t.test(`fuzzing every route: only 2xx/4xx, and a 4xx changes nothing [${engine}]`, async (t) => {
    const backend = await startTestBackend(engine);
    t.teardown(() => backend.close());
    const alice = await backend.addUser('alice');
    const bob = await backend.addUser('bob');
    const aliceRoot = await alice.client.root();
    const folder = await alice.client.create({ parent_id: aliceRoot.id, name: 'folder', kind: 'dir' });
    const file = await alice.client.create({ parent_id: folder.id, name: 'file.txt', kind: 'file' });
    const blocks = await commitRandomBlocks(alice.client, file.id, 0, [1000]);
    await commitRandomBlocks(alice.client, file.id, 1, [2000]);
    const trashed = await alice.client.create({ parent_id: aliceRoot.id, name: 'trashed', kind: 'file' });
    await alice.client.remove(trashed.id);
    const bobFile = await bob.client.create({ parent_id: (await bob.client.root()).id, name: 'bob.txt', kind: 'file' });
    const bobBlocks = await commitRandomBlocks(bob.client, bobFile.id, 0, [500]);
    const uploadable = randomBlock(300);
    // Revoking alice's own device would turn the rest of the run into 401s: a spare one is fair game.
    const aliceDevice = (await alice.client.createDevice('spare')).device.id;
    const bobDevice = (await bob.client.whoami()).device.id;

    const nodeIds = [aliceRoot.id, folder.id, file.id, trashed.id, bobFile.id, '00000000-0000-4000-8000-000000000000'];
    const hashes = [blocks[0]!.hash, bobBlocks[0]!.hash, uploadable.hash, 'f'.repeat(64)];
    const junk = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.string({ unit: 'binary', maxLength: 20 }),
      fc.constantFrom('0', '1', '-1', '1e3', '0x5', '00001', '5.0', 'head', '%FF', '%00', '..', '.', '%2F', 'null', ' '),
      fc.integer().map(String),
    );
    const paramValue = (name: string, pattern: string): fc.Arbitrary<string> => {
      const known =
        name === 'hash'
          ? fc.constantFrom(...hashes)
          : name === 'v'
            ? fc.constantFrom('1', '2', '3', 'head')
            : pattern.startsWith('/v1/devices')
              ? fc.constantFrom(aliceDevice, bobDevice)
              : fc.constantFrom(...nodeIds);
      return fc.oneof({ weight: 3, arbitrary: known }, { weight: 1, arbitrary: junk.map((s) => encodeURIComponent(s)) }, { weight: 1, arbitrary: junk.map((s) => s.replace(/[^\x21-\x7e]/g, '')).filter((s) => s.length > 0 && !s.includes('/') && !s.includes('?') && !s.includes('#')) });
    };
    const queryKeys = ['limit', 'since', 'before', 'after', 'if_version', 'if_empty', 'cursor', 'x'];
    const jsonField = fc.oneof(fc.constantFrom(...nodeIds), fc.string({ maxLength: 30 }), fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.constantFrom('file', 'dir', 'a'.repeat(300)), fc.array(fc.anything({ maxDepth: 1 }), { maxLength: 3 }));
    const blockRef = fc.record({ hash: fc.oneof(fc.constantFrom(...hashes), fc.string()), size: fc.oneof(fc.constantFrom(300, 500, 1000, 2000), fc.integer()) }, { requiredKeys: [] });
    const shapedBody = fc.record(
      {
        parent_id: jsonField,
        name: fc.oneof(jsonField, fc.string({ unit: 'grapheme', maxLength: 20 })),
        kind: jsonField,
        replace: fc.oneof(fc.boolean(), jsonField),
        mtime: fc.oneof(fc.integer(), fc.double(), jsonField),
        mode: fc.oneof(fc.integer({ min: -1, max: 0o20000 }), jsonField),
        base_version: fc.oneof(fc.integer({ min: -1, max: 4 }), jsonField),
        blocks: fc.oneof(fc.array(blockRef, { maxLength: 4 }), jsonField),
        size: fc.oneof(fc.constantFrom(0, 300, 500, 1000, 2000), fc.integer(), jsonField),
        hashes: fc.oneof(fc.array(fc.oneof(fc.constantFrom(...hashes), fc.string()), { maxLength: 4 }), jsonField),
      },
      { requiredKeys: [] },
    );
    const body: fc.Arbitrary<Buffer | undefined> = fc.oneof(
      { weight: 4, arbitrary: shapedBody.map((b) => Buffer.from(JSON.stringify(b))) },
      { weight: 1, arbitrary: fc.constant(undefined) },
      { weight: 1, arbitrary: fc.anything().map((v) => Buffer.from(JSON.stringify(v) ?? 'null')) },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)) },
      { weight: 1, arbitrary: fc.constant(uploadable.bytes) },
    );
    const routes = authenticatedRoutes(backend);
    const request: fc.Arbitrary<Request> = fc
      .constantFrom(...routes)
      .chain((route) =>
        fc.record({
          route: fc.constant(route),
          params: fc.record(Object.fromEntries(route.params.map((p) => [p, paramValue(p, route.pattern)]))) as fc.Arbitrary<Record<string, string>>,
          query: fc.array(fc.tuple(fc.constantFrom(...queryKeys), junk.map((s) => encodeURIComponent(s))), { maxLength: 3 }),
          body,
          contentType: fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain', 'application/octet-stream', undefined),
          auth: fc.constantFrom('alice', 'alice', 'alice', 'bob', 'none', 'garbage'),
        }),
      );

    const send = (r: Request): Promise<RawResponse> => {
      const path = fillPath(r.route, (name) => r.params[name]!);
      const qs = r.query.map(([k, v]) => `${k}=${v}`).join('&');
      const token = r.auth === 'alice' ? alice.token : r.auth === 'bob' ? bob.token : r.auth === 'garbage' ? 'stx_garbage' : undefined;
      return raw(backend, r.route.method, qs ? `${path}?${qs}` : path, { token, body: r.body, headers: r.contentType ? { 'content-type': r.contentType } : {} });
    };

    const statuses = new Map<number, number>();
    let runs = 0;
    const started = Date.now();
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        runs++;
        const before = await backend.snapshot();
        const res = await send(r);
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        if (res.status >= 500 || res.status < 200) throw new Error(`${res.status} ${res.text.slice(0, 300)}`);
        if (res.status >= 400 && (await backend.snapshot()) !== before) throw new Error(`a ${res.status} changed the database or the store: ${res.text.slice(0, 300)}`);
      }),
      { numRuns: 1_000_000, interruptAfterTimeLimit: BUDGET_MS, markInterruptAsFailure: false },
    );
    const summary = [...statuses].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}×${n}`).join(' ');
    t.ok(runs >= 50, `${runs} requests in ${Date.now() - started} ms over ${routes.length} routes: ${summary}`);
    t.ok([...statuses.keys()].some((s) => s >= 200 && s < 300), 'some requests succeeded (the generator reaches real handlers)');
  });
}
