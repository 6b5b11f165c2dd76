import type Koa from 'koa';
import type { Knex } from 'knex';
import { ApiError } from '../../protocol/errors.js';
import { authenticate } from '../services/accounts.js';
import type { Actor, Backend } from '../services/context.js';

/** The actor an `Authorization: Bearer <device token>` header names; 401 otherwise (HTTP routes and the WebSocket upgrade). */
export async function actorFromHeader(db: Knex, header: string | undefined): Promise<Actor> {
  const match = /^Bearer\s+(\S+)$/i.exec(header ?? '');
  if (!match?.[1]) throw new ApiError('unauthorized', header ? 'malformed Authorization header; expected "Bearer <token>"' : 'missing bearer token');
  const actor = await authenticate(db, match[1]);
  if (!actor) throw new ApiError('unauthorized', 'invalid or revoked token');
  return actor;
}

/** Resolves the bearer token to an actor in `ctx.state.actor` (401 otherwise) and counts the request against the user's rate limit (429). */
export function authMiddleware(backend: Backend): Koa.Middleware {
  return async (ctx, next) => {
    const actor = await actorFromHeader(backend.db, ctx.get('Authorization') || undefined);
    await backend.rates.request(actor.userId);
    ctx.state.actor = actor;
    await next();
  };
}

export function actorOf(ctx: Koa.Context): Actor {
  return ctx.state.actor as Actor;
}
