import type { Knex } from 'knex';
import type { BlockStore } from '../blockstore/blockstore.js';
import type { ServerSettings } from '../settings.js';

/** Who is asking: resolved from the bearer token by the auth middleware. */
export interface Actor {
  userId: number;
  userName: string;
  deviceId: number;
  deviceName: string;
}

/** What every service works with. */
export interface Backend {
  db: Knex;
  store: BlockStore;
  settings: ServerSettings;
}
