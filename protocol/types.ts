/** API shapes shared by the backend, the mount, the CLI and the tests (DESIGN §5). */

/** A link is a symbolic link: it holds a target path, stored as written and never followed by the server. */
export type NodeKind = 'file' | 'dir' | 'link';

/** What a user may do with a node: read (viewer), change (editor), also share (owner). */
export type Role = 'viewer' | 'editor' | 'owner';

export interface NodeInfo {
  id: string;
  parent_id: string | null;
  name: string;
  kind: NodeKind;
  /** 0 for a file that was never committed. */
  head_version: number;
  size: number;
  /** Milliseconds since the epoch. */
  mtime: number;
  mode: number;
  deleted_at: string | null;
  created_at: string;
  /** A link's target exactly as written (links only; their `size` is its length in UTF-8 bytes). */
  target?: string;
  /** The caller's role on the node (owner of what is theirs; a share's role inside it). */
  role?: Role;
  /** A share with the caller, where it shows in their tree: they may rename, move or remove it (for themselves) whatever their role. */
  share_entry?: true;
}

export interface BlockRef {
  hash: string;
  size: number;
}

export interface VersionInfo {
  node_id: string;
  version: number;
  size: number;
  mtime: number;
  /** The public id of the device that committed it. */
  device_id: string | null;
  base_version: number;
  committed_at: string;
  /** The name of that device (null: unknown, or a device since removed). */
  device_name?: string | null;
}

export interface Manifest extends VersionInfo {
  blocks: BlockRef[];
}

export interface ChunkingParams {
  min: number;
  avg: number;
  max: number;
}

export interface ServerLimits {
  max_block_size: number;
  max_manifest_blocks: number;
  /** A manifest of more than this many blocks… */
  manifest_free_blocks: number;
  /** …must have blocks of at least this many bytes on average (a quarter of the chunker's minimum). */
  min_bytes_per_block: number;
  /** A JSON request body, but a commit's. */
  max_json_bytes: number;
  /** A commit's body (a manifest of up to max_manifest_blocks). */
  max_commit_json_bytes: number;
  max_check_hashes: number;
  max_page_size: number;
  /** Operations in one POST /v1/batch. */
  max_batch_ops: number;
}

export interface ServerConfig {
  server: { name: string; version: string; api: 'v1' };
  chunking: ChunkingParams;
  limits: ServerLimits;
}

export interface ChildrenPage {
  children: NodeInfo[];
  /** Pass as `after` to get the next page; null on the last page. */
  next: string | null;
}

/**
 * A node's state now, as the caller sees it. `gone`: the node left what the caller can see (moved
 * out of a share, a share revoked or left): nothing else of it is told, and it is to be dropped
 * like a deleted node (`deleted_at` is set).
 */
export interface ChangeEntry extends NodeInfo {
  gone?: true;
}

export interface ChangesPage {
  changes: ChangeEntry[];
  /** Opaque: pass it back as `cursor` (a position in every namespace the caller can see). */
  cursor: string;
  has_more: boolean;
}

export interface CreateNodeRequest {
  parent_id: string;
  name: string;
  kind: NodeKind;
  mtime?: number;
  /** Files and folders only: a link's mode is always 0777. */
  mode?: number;
  /** Links only, and required for them: 1–4095 bytes of UTF-8 without NUL (protocol/link-target.ts). */
  target?: string;
}

export interface UpdateNodeRequest {
  parent_id?: string;
  name?: string;
  /** Allow replacing an existing node at the destination (editor "write temp, rename over"). */
  replace?: boolean;
  mtime?: number;
  /** Not for links (their mode is always 0777). */
  mode?: number;
}

/**
 * One operation of POST /v1/batch: what POST /v1/nodes, PATCH /v1/nodes/:id and DELETE
 * /v1/nodes/:id take. An id or parent_id may be `$N`: the id of the node op N of the same batch
 * (an earlier one, which succeeded) returned — a folder made and filled in one batch.
 */
export type BatchOp =
  | { op: 'create'; node: CreateNodeRequest }
  | { op: 'update'; id: string; node: UpdateNodeRequest }
  | { op: 'delete'; id: string; if_version?: number; if_empty?: boolean };

/** The outcome of one op: its status and node as its own request would have answered, or its error. */
export type BatchResult = { status: number; node: NodeInfo } | { status: number; error: { code: string; message: string; [extra: string]: unknown } };

export interface BatchResponse {
  /** One per op, in order. */
  results: BatchResult[];
}

export interface CommitRequest {
  base_version: number;
  blocks: BlockRef[];
  size: number;
  mtime?: number;
}

export interface DeviceInfo {
  /** Opaque: ids say nothing of how many other devices or users the server has. */
  id: string;
  name: string;
  created_at: string;
  last_seen_at: string | null;
  revoked_at: string | null;
}

export interface WhoAmI {
  user: { id: string; name: string };
  device: { id: string; name: string };
}

/** A share of a node (DESIGN §3): with a user, or by link (viewer). */
export interface ShareInfo {
  id: string;
  node_id: string;
  /** The shared node's name as the caller sees it (a grantee: their entry's name). */
  name: string;
  role: Role;
  /** The grantee's user name; null for a link. */
  user: string | null;
  /** Who owns what is shared. */
  owner: string;
  created_at: string;
  expires_at: string | null;
  /** A link share's path (`/s/TOKEN`), in the reply that created it only: the token is not stored. */
  url?: string;
}

export interface SharesPage {
  /** Shares with the caller (their entries). */
  shared_with_me: ShareInfo[];
  /** Shares of the caller's own nodes (with users and by link). */
  shared_by_me: ShareInfo[];
}

/** One item of the trash: a node deleted on its own, with everything that went with it (a folder's subtree). */
export interface TrashItem {
  id: string;
  name: string;
  kind: NodeKind;
  /** Where it was, as the caller sees their tree ("/Projects/report.txt"). */
  path: string;
  /** The folder it was in (restored there when it is live). */
  parent_id: string | null;
  /** Bytes of the file, or of every file in the folder's subtree. */
  size: number;
  /** Files in it (1 for a file). */
  files: number;
  deleted_at: string;
  /** The name of the device that deleted it (null: unknown). */
  deleted_by: string | null;
}

export interface TrashPage {
  items: TrashItem[];
  /** Pass as `after` for the next page; null: no more. */
  next: string | null;
}

/** A node as it was at a past time (GET /v1/history): its place, and the version that was its content then. */
export interface HistoryEntry {
  id: string;
  parent_id: string | null;
  name: string;
  kind: NodeKind;
  /** The head version at that time (0: no content yet; folders 0). */
  version: number;
  size: number;
  mtime: number;
  mode: number;
  target?: string;
}

export interface HistoryPage {
  /** The folder itself at that time. */
  node: HistoryEntry;
  children: HistoryEntry[];
  next: string | null;
}
