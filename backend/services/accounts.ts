import crypto from 'node:crypto';
import type { Knex } from 'knex';
import { ApiError } from '../../protocol/errors.js';
import { isWellFormed } from '../../protocol/names.js';
import type { DeviceInfo } from '../../protocol/types.js';
import { isUniqueViolation } from '../db/errors.js';
import { deviceInfo, num } from '../db/rows.js';
import type { Actor } from './context.js';
import { newNodeId, newPublicId } from './ids.js';
import { createNamespace } from './namespaces.js';
import { journal, journalRevocation, mutate } from './journal.js';

const USER_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
const DEVICE_NAME_MAX = 128;

/** Tokens are 256 random bits; only their SHA-256 is stored, so a database leak yields no credential. */
export function hashToken(token: string): string {
  return crypto.createHash('sha256').update(token).digest('hex');
}

function newToken(): string {
  return `stx_${crypto.randomBytes(32).toString('base64url')}`;
}

function assertDeviceName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || name.trim() === '' || name.length > DEVICE_NAME_MAX || /[\0-\x1f]/.test(name) || !isWellFormed(name)) {
    throw new ApiError('bad_request', `device name must be 1–${DEVICE_NAME_MAX} printable characters`);
  }
}

export interface NewDevice {
  userId: number;
  device: DeviceInfo;
  token: string;
}

/** Creates a user with an empty root folder and a first device; returns that device's token. */
export async function createUser(db: Knex, name: string, deviceName = 'first device'): Promise<NewDevice> {
  if (!USER_NAME_RE.test(name)) {
    throw new ApiError('bad_request', 'user name must be 1–64 characters: letters, digits, ".", "_", "@", "-", starting with a letter or digit');
  }
  assertDeviceName(deviceName);
  try {
    return await mutate(db, async (trx) => {
      const now = Date.now();
      const [userRow] = await trx('users').insert({ name, public_id: newPublicId(), created_at: now }).returning('id');
      const userId = num(typeof userRow === 'object' ? (userRow as { id: unknown }).id : userRow);
      const root = { id: newNodeId(), owner_id: userId, parent_id: null, name: '', kind: 'dir', head_version: 0, size: 0, mtime: now, mode: 0o755, created_at: now };
      await trx('nodes').insert(root);
      // The user's root is their namespace's root (the two rows point at each other).
      const ns = await createNamespace(trx, root.id, userId);
      await trx('nodes').where({ id: root.id }).update({ ns_id: ns });
      await journal(trx, { userId, deviceId: null, action: 'user.create', node: { ...root, ns_id: ns, deleted_at: null }, detail: { name } });
      const device = await insertDevice(trx, userId, deviceName);
      return { userId, ...device };
    });
  } catch (err) {
    if (isUniqueViolation(err)) throw new ApiError('exists', `user "${name}" already exists`);
    throw err;
  }
}

/** A new device (and token) for an existing user, by name: what `stratus user add` does for a second machine. */
export async function addDevice(db: Knex, userName: string, deviceName: string): Promise<NewDevice> {
  assertDeviceName(deviceName);
  const user = await db('users').where({ name: userName }).first();
  if (!user) throw new ApiError('not_found', `no user "${userName}"`);
  const userId = num(user.id);
  return mutate(db, async (trx) => ({ userId, ...(await insertDevice(trx, userId, deviceName)) }));
}

/** A new device for the caller's own account (POST /v1/devices). */
export async function createDevice(db: Knex, actor: Actor, deviceName: unknown): Promise<NewDevice> {
  assertDeviceName(deviceName);
  return mutate(db, async (trx) => {
    const created = await insertDevice(trx, actor.userId, deviceName, actor.deviceId);
    return { userId: actor.userId, ...created };
  });
}

async function insertDevice(trx: Knex.Transaction, userId: number, name: string, byDevice: number | null = null): Promise<{ device: DeviceInfo; token: string }> {
  const token = newToken();
  const now = Date.now();
  const [row] = await trx('devices').insert({ user_id: userId, public_id: newPublicId(), name, token_hash: hashToken(token), created_at: now }).returning('*');
  const device = deviceInfo(row as Record<string, unknown>);
  await journal(trx, { userId, deviceId: byDevice, action: 'device.create', detail: { device_id: num((row as { id: unknown }).id), name } });
  return { device, token };
}

const SEEN_EVERY_MS = 60_000;
const lastSeenWritten = new Map<number, number>();

/**
 * Tokens that authenticated in the last AUTH_CACHE_MS, by token hash: a request then costs no
 * query for its identity (measured: 30–45% of the server CPU of a small request). Only successes are
 * kept, for the database they were read from. Revocation still takes effect at once in this
 * process: `revokeDevice` evicts the device after its commit, and an answer read from the
 * database while a revocation was under way is not kept (the `revocations` generation). A device
 * revoked through another server process on the same database stops working within
 * AUTH_CACHE_MS (2 s) there.
 */
const AUTH_CACHE_MS = 2_000;
const AUTH_CACHE_MAX = 10_000;
const authCache = new Map<string, { db: Knex; actor: Readonly<Actor>; expires: number }>();
let revocations = 0;

/** Drops a revoked device from this process's authentication cache (also when another backend revoked it). */
export function forgetDevice(deviceId: number): void {
  revocations++;
  for (const [key, entry] of authCache) if (entry.actor.deviceId === deviceId) authCache.delete(key);
}

/** The actor a bearer token stands for, or null when it is unknown or revoked. */
export async function authenticate(db: Knex, token: string): Promise<Actor | null> {
  if (!token.startsWith('stx_') || token.length > 100) return null;
  const tokenHash = hashToken(token);
  const cached = authCache.get(tokenHash);
  if (cached && cached.db === db && cached.expires > Date.now()) return cached.actor;
  const generation = revocations;
  const row = await db('devices as d')
    .join('users as u', 'u.id', 'd.user_id')
    .select('d.id as device_id', 'd.public_id as device_public_id', 'd.name as device_name', 'd.revoked_at', 'u.id as user_id', 'u.public_id as user_public_id', 'u.name as user_name')
    .where('d.token_hash', tokenHash)
    .first();
  if (!row || row.revoked_at !== null) return null;
  const deviceId = num(row.device_id);
  const now = Date.now();
  // last_seen_at is informational: written at most once a minute per device, not on every request.
  if ((lastSeenWritten.get(deviceId) ?? 0) + SEEN_EVERY_MS < now) {
    lastSeenWritten.set(deviceId, now);
    await db('devices').where({ id: deviceId }).update({ last_seen_at: now });
  }
  const actor: Readonly<Actor> = Object.freeze({
    userId: num(row.user_id),
    deviceId,
    userPublicId: String(row.user_public_id),
    devicePublicId: String(row.device_public_id),
    userName: String(row.user_name),
    deviceName: String(row.device_name),
  });
  if (generation === revocations) {
    authCache.delete(tokenHash);
    authCache.set(tokenHash, { db, actor, expires: Date.now() + AUTH_CACHE_MS });
    // Oldest first out (Map keeps insertion order): a bound, not an LRU; a miss costs one query.
    if (authCache.size > AUTH_CACHE_MAX) authCache.delete(authCache.keys().next().value!);
  }
  return actor;
}

export async function listDevices(db: Knex, actor: Actor): Promise<DeviceInfo[]> {
  const rows: Array<Record<string, unknown>> = await db('devices').where({ user_id: actor.userId }).orderBy('id');
  return rows.map(deviceInfo);
}

/** Revokes one of the caller's devices (by its public id): its token stops working at once. */
export async function revokeDevice(db: Knex, actor: Actor, publicId: string): Promise<DeviceInfo> {
  let deviceId = 0;
  const revoked = await mutate(db, async (trx) => {
    const row = await trx('devices').where({ public_id: publicId, user_id: actor.userId }).first();
    if (!row) throw new ApiError('not_found', 'device not found');
    deviceId = num(row.id);
    if (row.revoked_at === null) {
      await trx('devices').where({ id: deviceId }).update({ revoked_at: Date.now() });
      journalRevocation(trx, { userId: actor.userId, deviceId });
      await journal(trx, { userId: actor.userId, deviceId: actor.deviceId, action: 'device.revoke', detail: { device_id: deviceId } });
    }
    return deviceInfo(await trx('devices').where({ id: deviceId }).first());
  });
  // After the commit: from here on no request of this process authenticates as that device.
  forgetDevice(deviceId);
  return revoked;
}
