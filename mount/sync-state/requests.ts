import type { ControlServer } from '../control/server.js';
import type { Tree } from '../node/tree.js';
import type { SyncStates } from './sync-state.js';

/**
 * `path-status {path}` on the drive's control socket: the sync state of the file or folder at a
 * path in the drive ("/a/b"), as `stratus status PATH` shows it (sync-state.ts NodeStatus).
 */
export function registerPathStatus(control: Pick<ControlServer, 'handle'>, tree: Tree, states: SyncStates): void {
  control.handle('path-status', async (args) => {
    const path = (args as { path?: unknown } | undefined)?.path;
    if (typeof path !== 'string' || !path.startsWith('/')) throw new Error('path-status takes { path: "/path/in/the/drive" }');
    if (path === '/.stratus' || path.startsWith('/.stratus/')) throw new Error(`${path}: the .stratus folder shows history; it has no sync state`);
    const node = await tree.resolve(path).catch(() => undefined);
    if (!node) throw new Error(`${path}: no such file or folder on the drive`);
    return states.statusOf(node);
  });
}
