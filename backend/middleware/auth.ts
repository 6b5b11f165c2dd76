import type Koa from 'koa';
import type { Knex } from 'knex';
import { ApiError } from '../../protocol/errors.js';
import { authenticate } from '../services/accounts.js';
import type { Actor } from '../services/context.js';

/** Resolves `Authorization: Bearer <device token>` to an actor in `ctx.state.actor`; 401 otherwise. */
export function authMiddleware(db: Knex): Koa.Middleware {
  return async (ctx, next) => {
    const header = ctx.get('Authorization');
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match?.[1]) throw new ApiError('unauthorized', header ? 'malformed Authorization header; expected "Bearer <token>"' : 'missing bearer token');
    const actor = await authenticate(db, match[1]);
    if (!actor) throw new ApiError('unauthorized', 'invalid or revoked token');
    ctx.state.actor = actor;
    await next();
  };
}

export function actorOf(ctx: Koa.Context): Actor {
  return ctx.state.actor as Actor;
}
