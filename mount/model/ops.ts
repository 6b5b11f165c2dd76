import type { NodeKind } from '../../protocol/types.js';

/**
 * What a local change owes the server, in the order it was made (DESIGN §6). Every operation names
 * its node by inode number; the server ids it needs are looked up when it is sent, so an id that
 * arrives later (a folder made a moment earlier) changes no queued operation.
 */
export type Op = CreateOp | MoveOp | DeleteOp | SetattrOp | ContentOp;

/** A node made here: its folder and name as they were when it was made (a later rename is its own op). */
export interface CreateOp {
  kind: 'create';
  ino: number;
  parent: number;
  name: string;
  nodeKind: NodeKind;
  mode: number;
  mtime: number;
  target?: string;
}

/** rename(2): `replace` is the node that had the name (a file the source takes the place of). */
export interface MoveOp {
  kind: 'move';
  ino: number;
  parent: number;
  name: string;
  replace?: number;
}

/** unlink(2) / rmdir(2): a file only at the version this mount saw, a folder only while empty. */
export interface DeleteOp {
  kind: 'delete';
  ino: number;
  ifVersion?: number;
  folder?: boolean;
}

/** chmod(2), utimens(2) of a node whose content is not waiting to be sent (that carries its mtime). */
export interface SetattrOp {
  kind: 'setattr';
  ino: number;
  mode?: number;
  mtime?: number;
}

/**
 * A closed file's content: a staging file this entry owns, made on top of `baseVersion`. With
 * `base`, the file was opened on that version without downloading it: the staging file holds
 * only `present` (what was written, and what reads fetched); the rest of [0, base.limit) is the
 * version's. `changed` spans every byte written (and `base.limit`, a truncate, is a change too):
 * the sender re-cuts from the first changed block only.
 */
export interface ContentOp {
  kind: 'content';
  ino: number;
  staging: string;
  size: number;
  mtime: number;
  baseVersion: number;
  base?: { sid: string; version: number; limit: number };
  present?: [number, number][];
  changed?: [number, number];
}

/** An operation in the durable log: `seq` orders it; `createdAt` dates conflicted copies. */
export interface LoggedOp<T extends Op = Op> {
  seq: number;
  op: T;
  createdAt: number;
}

/** Operations that change names and places: they go one at a time, in the order they were made. */
export function isStructural(op: Op): boolean {
  return op.kind !== 'content';
}
