import type Router from '@koa/router';
import { ApiError } from '../../protocol/errors.js';
import { EVENTS_PATH } from '../notify/gateway.js';
import { newRouter } from './router.js';

/** A plain GET of the events path (the WebSocket itself is served by notify/gateway.ts): say what it is rather than "no route". */
export function eventRoutes(): Router {
  const router = newRouter();
  router.get(EVENTS_PATH, () => {
    throw new ApiError('bad_request', `${EVENTS_PATH} is a WebSocket: send "Connection: Upgrade" and "Upgrade: websocket"`, {}, 426);
  });
  return router;
}
