import type Router from '@koa/router';
import type { ServerConfig, WhoAmI } from '../../protocol/types.js';
import { actorOf } from '../middleware/auth.js';
import { readJson } from '../middleware/json-body.js';
import { createDevice, listDevices, revokeDevice } from '../services/accounts.js';
import type { Backend } from '../services/context.js';
import { assertPublicId } from '../services/params.js';
import { SERVER_VERSION } from '../version.js';
import { newRouter } from './router.js';

/** Config, identity and devices: what a client asks before anything else. */
export function accountRoutes(backend: Backend): Router {
  const router = newRouter();
  router.get('/v1/config', (ctx) => {
    const config: ServerConfig = {
      server: { name: 'stratus', version: SERVER_VERSION, api: 'v1' },
      chunking: backend.settings.chunking,
      limits: backend.settings.limits,
    };
    ctx.body = config;
  });
  router.get('/v1/whoami', (ctx) => {
    const actor = actorOf(ctx);
    const body: WhoAmI = { user: { id: actor.userPublicId, name: actor.userName }, device: { id: actor.devicePublicId, name: actor.deviceName } };
    ctx.body = body;
  });
  router.get('/v1/devices', async (ctx) => {
    ctx.body = { devices: await listDevices(backend.db, actorOf(ctx)) };
  });
  router.post('/v1/devices', async (ctx) => {
    const body = (await readJson(ctx, backend.settings.limits.max_json_bytes)) as { name?: unknown } | undefined;
    const created = await createDevice(backend.db, actorOf(ctx), body?.name);
    ctx.status = 201;
    ctx.body = { device: created.device, token: created.token };
  });
  router.delete('/v1/devices/:id', async (ctx) => {
    const id = ctx.params.id;
    assertPublicId(id, 'device id');
    ctx.body = await revokeDevice(backend.db, actorOf(ctx), id);
  });
  return router;
}
