import crypto from 'node:crypto';

export function newNodeId(): string {
  return crypto.randomUUID();
}

/** An opaque id for a user or device as replies show it: 96 random bits, 16 base64url characters. */
export function newPublicId(): string {
  return crypto.randomBytes(12).toString('base64url');
}
