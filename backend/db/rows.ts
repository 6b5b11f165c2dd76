import type { ChangeEntry, DeviceInfo, NodeInfo, NodeKind, VersionInfo } from '../../protocol/types.js';

/**
 * The one place where driver differences are normalized: pg returns bigint columns as strings
 * and sqlite3 returns numbers; JSON is stored as text on both. Everything above this module sees
 * plain numbers, ISO timestamps and parsed manifests.
 */

export function num(value: unknown): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'string' || typeof value === 'bigint') return Number(value);
  throw new TypeError(`expected a number column, got ${typeof value}`);
}

export function numOrNull(value: unknown): number | null {
  return value === null || value === undefined ? null : num(value);
}

export function iso(ms: unknown): string {
  return new Date(num(ms)).toISOString();
}

export function isoOrNull(ms: unknown): string | null {
  return ms === null || ms === undefined ? null : iso(ms);
}

export type Row = Record<string, unknown>;

export interface NodeRow {
  id: string;
  owner_id: number;
  /** The namespace the node belongs to (its nearest namespace root's). */
  ns_id: number;
  parent_id: string | null;
  name: string;
  kind: NodeKind;
  head_version: number;
  size: number;
  mtime: number;
  mode: number;
  deleted_at: number | null;
  created_at: number;
  /** A link's target as written; null for files and folders. */
  target: string | null;
}

function nodeKind(kind: unknown): NodeKind {
  return kind === 'dir' || kind === 'link' ? kind : 'file';
}

export function nodeRow(row: Row): NodeRow {
  return {
    id: String(row.id),
    owner_id: num(row.owner_id),
    ns_id: num(row.ns_id),
    parent_id: row.parent_id === null || row.parent_id === undefined ? null : String(row.parent_id),
    name: String(row.name),
    kind: nodeKind(row.kind),
    head_version: num(row.head_version),
    size: num(row.size),
    mtime: num(row.mtime),
    mode: num(row.mode),
    deleted_at: numOrNull(row.deleted_at),
    created_at: num(row.created_at),
    target: row.target === null || row.target === undefined ? null : String(row.target),
  };
}

export function nodeInfo(node: NodeRow): NodeInfo {
  return {
    id: node.id,
    parent_id: node.parent_id,
    name: node.name,
    kind: node.kind,
    head_version: node.head_version,
    size: node.size,
    mtime: node.mtime,
    mode: node.mode,
    deleted_at: isoOrNull(node.deleted_at),
    created_at: iso(node.created_at),
    ...(node.kind === 'link' && { target: node.target ?? '' }),
  };
}

/** A `versions` row joined with its device's public id as `device_public_id` and name as `device_name` (see `versionRows`). */
export function versionInfo(row: Row): VersionInfo {
  return {
    node_id: String(row.node_id),
    version: num(row.version),
    size: num(row.size),
    mtime: num(row.mtime),
    device_id: row.device_public_id === null || row.device_public_id === undefined ? null : String(row.device_public_id),
    base_version: num(row.base_version),
    committed_at: iso(row.committed_at),
    device_name: row.device_name === null || row.device_name === undefined ? null : String(row.device_name),
  };
}


export function deviceInfo(row: Row): DeviceInfo {
  return {
    id: String(row.public_id),
    name: String(row.name),
    created_at: iso(row.created_at),
    last_seen_at: isoOrNull(row.last_seen_at),
    revoked_at: isoOrNull(row.revoked_at),
  };
}
