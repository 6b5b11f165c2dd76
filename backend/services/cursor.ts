import crypto from 'node:crypto';
import type { Knex } from 'knex';
import { ApiError } from '../../protocol/errors.js';

/**
 * The change feed's cursor (DESIGN §5): a position in each namespace the caller could see,
 * opaque to clients. It names namespaces by their public ids and is signed for the user it was
 * given to, so a client can neither forge a position in a namespace it never saw nor learn
 * anything from another user's cursor. `c1.<positions>.<signature>`.
 */

export type Positions = Map<string, number>;

const PREFIX = 'c1';
const keys = new WeakMap<Knex, Promise<Buffer>>();

/** The servers' cursor key (migration 005 made it), read once per database handle. */
function cursorKey(db: Knex): Promise<Buffer> {
  let key = keys.get(db);
  if (!key) {
    key = db('server_keys')
      .where({ name: 'cursor' })
      .first('value')
      .then((row: { value: string } | undefined) => {
        if (!row) throw new Error('the server has no cursor key (migration 005 not run?)');
        return Buffer.from(row.value, 'hex');
      });
    key.catch(() => keys.delete(db));
    keys.set(db, key);
  }
  return key;
}

function sign(key: Buffer, userPublicId: string, payload: string): string {
  return crypto.createHmac('sha256', key).update(`${userPublicId}.${payload}`).digest('base64url').slice(0, 22);
}

export async function encodeCursor(db: Knex, userPublicId: string, positions: Positions): Promise<string> {
  const payload = Buffer.from(JSON.stringify([...positions].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))).toString('base64url');
  return `${PREFIX}.${payload}.${sign(await cursorKey(db), userPublicId, payload)}`;
}

/**
 * The positions a cursor holds. No cursor, or a journal position of the server before namespaces
 * (a number): nothing, i.e. a full resync from the start of every namespace. Anything else that
 * is not a cursor this server gave this user is refused (400).
 */
export async function decodeCursor(db: Knex, userPublicId: string, raw: unknown): Promise<Positions> {
  if (raw === undefined || (typeof raw === 'string' && /^\d{1,20}$/.test(raw))) return new Map();
  const bad = () => new ApiError('bad_request', 'cursor is not one this server gave you: start again without one');
  if (typeof raw !== 'string' || raw.length > 64 * 1024) throw bad();
  const [prefix, payload, signature, ...rest] = raw.split('.');
  if (prefix !== PREFIX || !payload || !signature || rest.length > 0) throw bad();
  const expected = Buffer.from(sign(await cursorKey(db), userPublicId, payload));
  const given = Buffer.from(signature);
  if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) throw bad();
  const positions: Positions = new Map();
  for (const [ns, seq] of JSON.parse(Buffer.from(payload, 'base64url').toString()) as Array<[string, number]>) positions.set(ns, seq);
  return positions;
}
