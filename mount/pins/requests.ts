import type { ControlServer } from '../control/server.js';
import type { PinManager } from './pin-manager.js';

/** The arguments of `pin` and `unpin`: a path in the drive ("/a/b"). */
function drivePath(args: unknown): string {
  const path = (args as { path?: unknown } | undefined)?.path;
  if (typeof path !== 'string' || !path.startsWith('/')) throw new Error('pin and unpin take { path: "/path/in/the/drive" }');
  return path;
}

/**
 * The drive's pin requests on its control socket (mount/control/server.ts):
 * - `pin {path}`: streams PinProgress while it fetches, answers the pin's summary (and
 *   fetchedBytes); the client going away does not stop the fetch (the pin stays);
 * - `unpin {path}`: answers what was released;
 * - `pins`: every pinned path with its files and bytes.
 */
export function registerPinRequests(control: Pick<ControlServer, 'handle'>, pins: PinManager): void {
  control.handle('pin', (args, reply) =>
    pins.pin(drivePath(args), (p) => {
      if (!reply.signal.aborted) reply.progress(p);
    }),
  );
  control.handle('unpin', (args) => pins.unpin(drivePath(args)));
  control.handle('pins', () => pins.list());
}
