import type { Readable } from 'node:stream';
import type { Knex } from 'knex';
import { nameProblem } from '../../protocol/names.js';
import { BlockNotFoundError, BlockTruncatedError, isRecycling } from '../blockstore/blockstore.js';
import { nodeRow, num, type NodeRow } from '../db/rows.js';
import { linkReaches, linkShareRoot } from './access.js';
import { isIntact, readVerified } from './block-integrity.js';
import type { Backend } from './context.js';
import { linkTokenHash } from './shares.js';

/**
 * Link shares in a browser (DESIGN §3, §5 `/s/:token`): what a link's URL names, and what it may
 * show. A URL is `/s/TOKEN` (the shared node) or `/s/TOKEN/NAME/NAME…` (a node under it, by
 * names). Which node a token opens, and what under it a link may show, is decided in access.ts
 * (`linkShareRoot`, `linkReaches`); this module only walks down from that node by names, so
 * nothing above it can be named, however the path is spelled. Every failure — a malformed token
 * or path, an unknown, revoked or expired token, a name that is not there or is in the trash — is
 * the same `undefined`, which the route answers with one and the same 404 page.
 */

/** A link token as `createShare` makes them: 24 random bytes in base64url. */
const TOKEN_RE = /^[A-Za-z0-9_-]{32}$/;

/** Most entries a folder page lists (a bigger folder's page says how many more there are). */
export const MAX_LISTING = 5000;

/** What a link URL's path names: the token and the names below the shared node, decoded. */
export interface LinkPath {
  token: string;
  names: string[];
}

/**
 * Parses the raw (still percent-encoded) path of a request under `/s/`: the token exactly as made
 * (32 base64url characters, not decoded), then each segment percent-decoded once, which must be a
 * valid node name (protocol/names.ts). An empty segment (`//`, a trailing `/`), `.`, `..` (also
 * spelled `%2e%2e`), a decoded `/` (`%2F`) or NUL, bad escapes and invalid UTF-8 all give undefined.
 */
export function parseLinkPath(rawPath: string): LinkPath | undefined {
  if (!rawPath.startsWith('/s/')) return undefined;
  const [token, ...segments] = rawPath.slice(3).split('/');
  if (token === undefined || !TOKEN_RE.test(token)) return undefined;
  const names: string[] = [];
  for (const segment of segments) {
    let name: string;
    try {
      name = decodeURIComponent(segment);
    } catch {
      return undefined;
    }
    if (nameProblem(name) !== null) return undefined;
    names.push(name);
  }
  return { token, names };
}

/** A node a link reaches, with the nodes from the shared node down to it (`trail[0]` is the shared node, the last is `node`). */
export interface LinkTarget {
  root: NodeRow;
  node: NodeRow;
  trail: NodeRow[];
}

/**
 * The node `names` lead to from the node the token opens, walking down live children only (one
 * lookup by hash, then one per name); undefined when the token opens nothing or a name is not a
 * live child the link reaches.
 */
export async function resolveLink(db: Knex, path: LinkPath): Promise<LinkTarget | undefined> {
  const root = await linkShareRoot(db, linkTokenHash(path.token));
  if (!root) return undefined;
  let node = root;
  const trail = [root];
  for (const name of path.names) {
    if (node.kind !== 'dir') return undefined;
    const row: Record<string, unknown> | undefined = await db('nodes').where({ parent_id: node.id, name }).whereNull('deleted_at').first();
    if (!row) return undefined;
    node = nodeRow(row);
    if (!linkReaches(root, node)) return undefined;
    trail.push(node);
  }
  return { root, node, trail };
}

/** A folder's live children the link reaches: folders first, then the rest, each by name (code point order, as the API lists); at most `limit`. */
export async function linkChildren(db: Knex, root: NodeRow, dir: NodeRow, limit = MAX_LISTING): Promise<{ children: NodeRow[]; more: number }> {
  const rows: Array<Record<string, unknown>> = await db('nodes')
    .where({ parent_id: dir.id })
    .whereNull('deleted_at')
    .orderByRaw("CASE WHEN kind = 'dir' THEN 0 ELSE 1 END")
    .orderBy('name')
    .limit(limit);
  const children = rows.map(nodeRow).filter((n) => linkReaches(root, n));
  let more = 0;
  if (rows.length === limit) {
    const counted = await db('nodes').where({ parent_id: dir.id }).whereNull('deleted_at').count({ n: '*' }).first();
    more = Math.max(0, num(counted?.n ?? 0) - limit);
  }
  return { children, more };
}

/** A file's content at its head version: its length, its blocks in order, and which of them the store is known to hold damaged. */
export interface FileContent {
  size: number;
  blocks: Array<{ hash: string; size: number }>;
  corrupt: Set<string>;
}

/** The head version's manifest of a file (no blocks for a file never written). */
export async function fileContent(db: Knex, file: NodeRow): Promise<FileContent> {
  if (file.head_version === 0) return { size: 0, blocks: [], corrupt: new Set() };
  // Version rows are never rewritten, so the manifest and block rows read here stay one version's.
  const row: Record<string, unknown> | undefined = await db('versions').where({ node_id: file.id, version: file.head_version }).first('manifest', 'size');
  if (!row) return { size: 0, blocks: [], corrupt: new Set() };
  const manifest = JSON.parse(String(row.manifest)) as Array<{ hash: string; size: number }>;
  const blocks = manifest.map((b) => ({ hash: String(b.hash), size: num(b.size) }));
  const corrupt: Array<{ hash: unknown }> = await db('version_blocks as vb')
    .join('blocks as b', 'b.hash', 'vb.hash')
    .where({ 'vb.node_id': file.id, 'vb.version': file.head_version })
    .whereNotNull('b.corrupt_at')
    .select('vb.hash');
  return { size: blocks.reduce((sum, b) => sum + b.size, 0), blocks, corrupt: new Set(corrupt.map((c) => String(c.hash))) };
}

/** One piece of a file's bytes; `written`, when given, is called once the bytes are written out (the store may then reuse the buffer). */
export interface FileChunk {
  bytes: Buffer;
  written?: () => void;
}

/**
 * A file's bytes, block after block in manifest order, read from the store as the block route
 * reads them (block-integrity.ts): a block not yet checked in this process, or marked damaged, is
 * read whole (one block, at most the maximum block size), checked against its id and served from
 * the checked bytes; a checked one is streamed from the store. Never more than a block in memory.
 * Throws (block_corrupt, or the store's error) at a block the store does not hold intact: the
 * caller, who has promised a length, then cuts the connection.
 */
export async function* fileChunks(backend: Backend, content: FileContent): AsyncGenerator<FileChunk> {
  const { db, store } = backend;
  for (const { hash, size } of content.blocks) {
    const markedCorrupt = content.corrupt.has(hash);
    if (markedCorrupt || !isIntact(store, hash)) {
      const bytes = await readVerified(db, store, hash, size, markedCorrupt);
      content.corrupt.delete(hash); // checked good (readVerified throws otherwise), and its mark cleared
      yield { bytes };
      continue;
    }
    try {
      const stream: Readable = await store.get(hash, { start: 0, end: size - 1 });
      for await (const chunk of stream) {
        const bytes = chunk as Buffer;
        yield { bytes, ...(isRecycling(stream) && { written: () => stream.recycle(bytes) }) };
      }
    } catch (err) {
      // Gone or shorter since it was checked: looked at whole, and marked corrupt like any damaged block (readVerified throws).
      if (err instanceof BlockNotFoundError || err instanceof BlockTruncatedError) await readVerified(db, store, hash, size);
      throw err;
    }
  }
}
