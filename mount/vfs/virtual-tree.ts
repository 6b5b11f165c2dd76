import { constants as fsc } from 'node:fs';
import { parseHistoryTime } from '../../protocol/history-time.js';
import type { HistoryEntry } from '../../protocol/types.js';
import type { BlockSource } from '../blocks/block-source.js';
import { PinnedManifest } from '../blocks/pinned-manifest.js';
import type { HistorySource } from '../history/history-source.js';
import { versionFileName } from '../history/version-names.js';
import { VirtualInodes } from '../history/virtual-inodes.js';
import { FsError } from '../model/errors.js';
import type { LocalNode } from '../model/local-node.js';
import type { Tree } from '../node/tree.js';
import { ManifestReader } from './manifest-reader.js';
import type { Manifests } from './manifests.js';
import { checkNameLength } from './posix.js';
import type { Stat } from './stat.js';

/** The folder of the virtual tree in the drive's root (DESIGN §6), and its path. */
export const VIRTUAL_NAME = '.stratus';
const VIRTUAL_ROOT = `/${VIRTUAL_NAME}`;

/** Whether a mount path is the virtual tree or lies in it. */
export function isVirtualPath(path: string): boolean {
  return path.startsWith(VIRTUAL_ROOT) && (path.length === VIRTUAL_ROOT.length || path[VIRTUAL_ROOT.length] === '/');
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const O_ACCMODE = 3;

/** A folder of the virtual tree: its entries are looked up by name, or listed, when asked. */
interface VirtualDir {
  kind: 'dir';
  ino: number;
  mtime: number;
  lookup(name: string): Promise<VirtualNode | undefined>;
  list(): Promise<Array<[string, VirtualNode]>>;
}

/** A read-only file: version `version` of the file the server knows as `sid`. */
interface VirtualFile {
  kind: 'file';
  ino: number;
  mtime: number;
  size: number;
  sid: string;
  version: number;
}

interface VirtualLink {
  kind: 'link';
  ino: number;
  mtime: number;
  target: string;
}

type VirtualNode = VirtualDir | VirtualFile | VirtualLink;

export interface VirtualTreeOptions {
  /** The drive's tree: `.stratus/versions/PATH` finds the file at PATH there. */
  tree: Tree;
  history: HistorySource;
  /** The drive's manifests and blocks: a past version reads like any file (block cache, deadlines). */
  manifests: Manifests;
  source: BlockSource;
  uid: number;
  gid: number;
}

/** A read-only file opened in the virtual tree: what the Vfs keeps in its handle. */
export interface OpenedVirtualFile {
  ino: number;
  reader: ManifestReader;
  stat: Stat;
}

/**
 * The virtual tree `MOUNT/.stratus/` (DESIGN §6), like ZFS's hidden `.zfs`: the root's listing does
 * not show it (so `find` and `rsync` of the drive never walk it) but every path in it resolves.
 *
 * - `.stratus/versions/PATH/` — for the file at PATH (relative to the drive's root, as this drive
 *   has it: the server node it is), a folder listing every version of it as a read-only file named
 *   by version-names.ts; for a folder at PATH, its files and folders again (so a shell completes
 *   paths). Links have no versions and are not shown.
 * - `.stratus/at/TIME/` — the whole tree read-only as it was at TIME (protocol/history-time.ts: ISO
 *   8601, UTC unless it says its zone, or ms since the epoch), from GET /v1/history. `.stratus/at/`
 *   itself lists nothing: every past time resolves, none is listed.
 *
 * Files read lazily through the drive's read path (manifest of the version, blocks from the cache or
 * the server). Nothing here changes: the Vfs answers every change in the tree with EROFS (`readOnly`).
 * Virtual nodes have inode numbers of their own (virtual-inodes.ts). The tree is resolved from the
 * top on each call; the listings it needs are kept by the HistorySource and the drive's tree.
 */
export class VirtualTree {
  private readonly inodes = new VirtualInodes();

  constructor(private readonly o: VirtualTreeOptions) {}

  async getattr(path: string): Promise<Stat> {
    return this.stat(await this.resolve(path));
  }

  async readdir(path: string): Promise<{ names: string[]; stats: Stat[] }> {
    const dir = await this.resolve(path);
    if (dir.kind !== 'dir') throw new FsError('ENOTDIR');
    const entries = await dir.list();
    return { names: entries.map(([name]) => name), stats: entries.map(([, node]) => this.stat(node)) };
  }

  async readlink(path: string): Promise<string> {
    const node = await this.resolve(path);
    if (node.kind !== 'link') throw new FsError('EINVAL');
    return node.target;
  }

  /** open(2) for reading; opening for writing (or to truncate) is EROFS, as on a read-only file system. */
  async open(path: string, flags: number): Promise<OpenedVirtualFile> {
    const node = await this.resolve(path);
    if (node.kind === 'dir') throw new FsError('EISDIR');
    if ((flags & O_ACCMODE) !== fsc.O_RDONLY || (flags & fsc.O_TRUNC) !== 0) throw readOnly();
    if (node.kind === 'link') throw new FsError('ELOOP');
    const manifest = node.version === 0 ? new PinnedManifest(0, []) : await this.o.manifests.at(node.sid, node.version);
    return { ino: node.ino, reader: new ManifestReader(manifest, this.o.source), stat: this.stat(node) };
  }

  // --- resolving ----------------------------------------------------------------------------------

  private async resolve(path: string): Promise<VirtualNode> {
    let node: VirtualNode = this.top();
    for (const part of path.slice(VIRTUAL_ROOT.length).split('/')) {
      if (part === '') continue;
      if (node.kind !== 'dir') throw new FsError('ENOTDIR');
      checkNameLength(part);
      const next: VirtualNode | undefined = await node.lookup(part);
      if (!next) throw new FsError('ENOENT');
      node = next;
    }
    return node;
  }

  private top(): VirtualDir {
    const mtime = this.o.tree.root().mtime;
    return fixedDir(this.inodes.of('top'), mtime, [
      ['at', () => this.pastTimes(mtime)],
      ['versions', () => this.versionsOf(this.o.tree.root())],
    ]);
  }

  /** `.stratus/at/`: any time that parses and has passed is a folder in it; none is listed. */
  private pastTimes(mtime: number): VirtualDir {
    return {
      kind: 'dir',
      ino: this.inodes.of('at'),
      mtime,
      lookup: async (name) => {
        const at = parseHistoryTime(name, 'local');
        if (at === undefined || at > Date.now()) return undefined;
        const root = await this.o.history.folderAt(at);
        return this.pastDir(at, root.node);
      },
      list: async () => [],
    };
  }

  /** A folder as it was at `at`. */
  private pastDir(at: number, entry: HistoryEntry): VirtualDir {
    const children = async () => (await this.o.history.folderAt(at, entry.id)).children;
    return {
      kind: 'dir',
      ino: this.inodes.of(`at ${at} ${entry.id}`),
      mtime: entry.mtime,
      lookup: async (name) => {
        const child = (await children()).get(name);
        return child && this.pastNode(at, child);
      },
      list: async () => [...(await children()).values()].map((c) => [c.name, this.pastNode(at, c)]),
    };
  }

  private pastNode(at: number, entry: HistoryEntry): VirtualNode {
    if (entry.kind === 'dir') return this.pastDir(at, entry);
    const ino = this.inodes.of(`at ${at} ${entry.id}`);
    if (entry.kind === 'link') return { kind: 'link', ino, mtime: entry.mtime, target: entry.target ?? '' };
    return { kind: 'file', ino, mtime: entry.mtime, size: entry.size, sid: entry.id, version: entry.version };
  }

  /**
   * `.stratus/versions/…` for a node of the drive's tree: a folder's files and folders, each again
   * a folder here; a file's versions. A file the server has no version of (new, not sent yet) has
   * an empty folder.
   */
  private versionsOf(real: LocalNode): VirtualDir {
    const ino = this.inodes.of(`versions ${real.ino}`);
    if (real.kind !== 'dir') {
      const versions = () => this.versionFiles(real);
      return {
        kind: 'dir',
        ino,
        mtime: real.mtime,
        lookup: async (name) => (await versions()).get(name),
        list: async () => [...(await versions())],
      };
    }
    const tree = this.o.tree;
    return {
      kind: 'dir',
      ino,
      mtime: real.mtime,
      lookup: async (name) => {
        await tree.ensureListed(real);
        const child = tree.child(real.ino, name);
        return child && child.kind !== 'link' ? this.versionsOf(child) : undefined;
      },
      list: async () => {
        await tree.ensureListed(real);
        return tree
          .children(real.ino)
          .filter((c) => c.kind !== 'link')
          .map((c) => [c.name, this.versionsOf(c)]);
      },
    };
  }

  /** The versions of a file of the drive's tree, by the names they show. */
  private async versionFiles(file: LocalNode): Promise<Map<string, VirtualFile>> {
    const out = new Map<string, VirtualFile>();
    if (file.sid === null || file.headVersion === 0) return out;
    for (const v of await this.o.history.versions(file.sid, file.headVersion)) {
      const ino = this.inodes.of(`versions ${file.ino} ${v.version}`);
      out.set(versionFileName(file.name, v), { kind: 'file', ino, mtime: v.mtime, size: v.size, sid: file.sid, version: v.version });
    }
    return out;
  }

  /** Read-only attributes: r--r--r-- files, r-xr-xr-x folders; a folder's link count is 1 ("not known", as for unlisted folders). */
  private stat(node: VirtualNode): Stat {
    const size = node.kind === 'dir' ? 4096 : node.kind === 'link' ? Buffer.byteLength(node.target, 'utf8') : node.size;
    const mode = node.kind === 'dir' ? S_IFDIR | 0o555 : node.kind === 'link' ? S_IFLNK | 0o777 : S_IFREG | 0o444;
    return {
      ino: node.ino,
      mode,
      uid: this.o.uid,
      gid: this.o.gid,
      size,
      nlink: 1,
      blksize: 4096,
      blocks: Math.ceil(size / 512),
      mtime: node.mtime,
      atime: node.mtime,
      ctime: node.mtime,
    };
  }
}

/** EROFS: nothing in the virtual tree changes. */
export function readOnly(): FsError {
  return new FsError('EROFS', 'the .stratus folder is read-only (copy from it to restore)');
}

/** A folder whose entries are fixed names. */
function fixedDir(ino: number, mtime: number, entries: Array<[string, () => VirtualNode]>): VirtualDir {
  return {
    kind: 'dir',
    ino,
    mtime,
    lookup: async (name) => entries.find(([n]) => n === name)?.[1](),
    list: async () => entries.map(([name, make]) => [name, make()]),
  };
}
