import crypto from 'node:crypto';
import type { Knex } from 'knex';

/** This process, as a lease holder (unique per process and run). */
export const HOLDER = `${process.pid}-${crypto.randomBytes(6).toString('hex')}`;

/**
 * Takes the lease of job `name` for `ttlMs` if it is free (never taken, expired, or already ours):
 * one conditional UPDATE, so of N backends asking at once exactly one gets it (PostgreSQL makes
 * the others wait on the row and then re-check its condition). A holder that dies frees it when it
 * expires; a long run renews it (`takeLease` again) well before that.
 */
export async function takeLease(db: Knex, name: string, ttlMs: number, holder = HOLDER): Promise<boolean> {
  const now = Date.now();
  await db('job_leases').insert({ name, holder: '', expires_at: 0 }).onConflict('name').ignore();
  const taken = await db('job_leases')
    .where({ name })
    .andWhere((q) => q.where('expires_at', '<', now).orWhere('holder', holder))
    .update({ holder, expires_at: now + ttlMs });
  return taken === 1;
}

/** Gives the lease back (only if it is still ours). */
export async function releaseLease(db: Knex, name: string, holder = HOLDER): Promise<void> {
  await db('job_leases').where({ name, holder }).update({ expires_at: 0 });
}
