import type { Knex } from 'knex';
import type { BlockStore } from '../blockstore/blockstore.js';
import type { ServerSettings } from '../settings.js';
import type { RateLimits } from './rate-limits.js';

/** Who is asking: resolved from the bearer token by the auth middleware. */
export interface Actor {
  /** Internal keys: never sent to a client (they count other users' rows). */
  userId: number;
  deviceId: number;
  /** What replies show. */
  userPublicId: string;
  devicePublicId: string;
  userName: string;
  deviceName: string;
}

/** What every service works with. */
export interface Backend {
  db: Knex;
  store: BlockStore;
  settings: ServerSettings;
  rates: RateLimits;
}
