import type { ParameterizedContext } from 'koa';

/**
 * What a route knows about its request that the metrics middleware cannot see from the outside
 * (the request body is consumed by then): noted by the route, read once the reply is made.
 */
export interface RequestFacts {
  /** Size of the version a commit asked for (its logical bytes, before dedup). */
  committedBytes: number;
  /** Distinct hashes a block check asked about. */
  checkedHashes: number;
}

const KEY = 'stratusFacts';

export function noteFacts(ctx: ParameterizedContext, facts: Partial<RequestFacts>): void {
  const state = ctx.state as Record<string, unknown>;
  state[KEY] = { ...(state[KEY] as Partial<RequestFacts> | undefined), ...facts };
}

export function factsOf(ctx: ParameterizedContext): Partial<RequestFacts> {
  return ((ctx.state as Record<string, unknown>)[KEY] as Partial<RequestFacts> | undefined) ?? {};
}
