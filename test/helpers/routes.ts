import { apiRoutes, publicRoutes } from '../../backend/app.js';
import type { Backend } from '../../backend/services/context.js';
import { RateLimits } from '../../backend/services/rate-limits.js';

/** One route of the app as its router declares it: a method and a path pattern such as `/v1/nodes/:id`. */
export interface Route {
  method: string;
  pattern: string;
  /** The names of its path parameters, in order. */
  params: string[];
}

type Served = Omit<Backend, 'rates'>;

/** The routers are only read here, never called: their backend needs no rate limits of its own. */
function withRates(backend: Served): Backend {
  return { ...backend, rates: new RateLimits(backend.settings.rate) };
}

function table(router: ReturnType<typeof apiRoutes>): Route[] {
  const routes: Route[] = [];
  for (const layer of router.stack) {
    for (const method of layer.methods) {
      routes.push({ method, pattern: layer.path as string, params: layer.paramNames.map((p) => String(p.name)) });
    }
  }
  return routes;
}

/**
 * Every route that needs a token, read from the app's own router: a route added later is in
 * this list (and so in every test that walks it) without anyone writing it down.
 */
export function authenticatedRoutes(backend: Served): Route[] {
  return table(apiRoutes(withRates(backend)));
}

/** The routes listed as public (no token). */
export function openRoutes(backend: Served): Route[] {
  return table(publicRoutes(withRates(backend)));
}

/** The path of a route with each `:param` replaced by `values(name, route)`. */
export function fillPath(route: Route, values: (param: string, route: Route) => string): string {
  return route.pattern.replace(/:([A-Za-z_]+)/g, (_m, name: string) => values(name, route));
}

/** The same path as other spellings a router or proxy might treat as equal. */
export function spellings(path: string): Array<[string, string]> {
  const [, first = '', rest = ''] = /^\/([^/]*)(.*)$/.exec(path) ?? [];
  const encodedFirst = `%${first.charCodeAt(0).toString(16).toUpperCase()}${first.slice(1)}`;
  return [
    ['upper-case prefix', `/${first.toUpperCase()}${rest}`],
    ['upper-case path', path.replace(/[a-z]+/g, (w) => (w.length > 2 ? w.toUpperCase() : w))],
    ['percent-encoded letter', `/${encodedFirst}${rest}`],
    ['double slash inside', `/${first}/${rest}`],
    ['double slash first', `/${path}`],
    ['trailing slash', `${path}/`],
    ['dot segment', `/${first}/.${rest}`],
    ['dot-dot segment', `/x/../${first}${rest}`],
    ['encoded slash', `/${first}%2F${rest.slice(1)}`],
    ['query string', `${path}?x=1`],
  ];
}
