import { chmod, lstat, rm } from 'node:fs/promises';
import net from 'node:net';
import { makePrivateDir } from './private-dir.js';
import { runtimeDir, socketPath } from './runtime-dir.js';
import { encodeFrame, LineSplitter, MAX_REQUEST_BYTES, type ControlFrame, type ControlRequest } from './wire.js';

/**
 * The control socket of one running drive (DESIGN §6): `stratus status`, `stratus unmount`, the
 * file commands (and pins, metrics…) ask the drive over it. It lives in the user's runtime
 * folder (mode 0700, mount/control/runtime-dir.ts), so only the user who mounted can connect.
 *
 * Requests go through a small router: a name and a handler.
 *
 * Adding a request (e.g. `pin`, `metrics`):
 *   1. In the module that owns what the request needs (mount/daemon.ts for the drive's state,
 *      cli/mount.ts for how the process stops), register it on the drive's ControlServer:
 *
 *        mount.control.handle('pin', async (args, reply) => {
 *          const { path } = args as { path: string };      // validate: a bad request is a thrown Error
 *          for await (const step of work(path)) {
 *            if (reply.signal.aborted) break;             // the client went away (its Ctrl-C)
 *            reply.progress({ files: step.files, bytes: step.bytes });   // streamed to the client
 *          }
 *          return { done: true };                        // the one result (any JSON value)
 *        });
 *
 *      A thrown Error becomes `{"error": message}` (one line, shown by the CLI as is).
 *   2. On the CLI side, ask it with askDrive(mountpoint, 'pin', args, { onProgress }) from
 *      mount/control/client.ts; it resolves with the result, rejects with the error.
 * Handlers run on the mount's event loop: like every FUSE callback, they must never block it.
 */

/** What a handler can do besides returning its result. */
export interface Reply {
  /** Streams one progress message (any JSON value) to the client, before the result. */
  progress(data: unknown): void;
  /** Aborted when the client disconnects before the result (e.g. Ctrl-C on the command). */
  signal: AbortSignal;
}

export type ControlHandler = (args: unknown, reply: Reply) => Promise<unknown> | unknown;

/** How long close() waits for requests still being answered before cutting them. */
const CLOSE_GRACE_MS = 10_000;

export class ControlServer {
  readonly path: string;
  private readonly handlers = new Map<string, ControlHandler>();
  private server: net.Server | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly sockets = new Set<net.Socket>();
  private closing: Promise<void> | undefined;

  constructor(readonly mountpoint: string) {
    this.path = socketPath(mountpoint);
  }

  /** Registers (or replaces) the handler of requests named `name`. */
  handle(name: string, handler: ControlHandler): void {
    this.handlers.set(name, handler);
  }

  /** The requests this drive answers. */
  get requests(): string[] {
    return [...this.handlers.keys()].sort();
  }

  /**
   * Creates the runtime folder (0700) and serves the socket (0600). A socket left by a drive that
   * is gone is replaced; one a live process answers on is refused (that drive serves this
   * mountpoint already).
   */
  async listen(): Promise<void> {
    // sockaddr_un holds 108 bytes with the terminating NUL.
    if (Buffer.byteLength(this.path) > 107) throw new Error(`the control socket path ${this.path} is too long for a unix socket: set XDG_RUNTIME_DIR to a shorter folder`);
    await makePrivateDir(runtimeDir());
    if (await this.answers()) throw new Error(`another stratus process serves the drive at ${this.mountpoint} (control socket ${this.path})`);
    await rm(this.path, { force: true });
    const server = net.createServer((socket) => this.serve(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    await chmod(this.path, 0o600);
    this.server = server;
  }

  /** A live process accepts connections at our socket path. */
  private async answers(): Promise<boolean> {
    const st = await lstat(this.path).catch(() => undefined);
    if (!st) return false;
    return new Promise((resolve) => {
      const probe = net.connect(this.path);
      probe.once('connect', () => {
        probe.destroy();
        resolve(true);
      });
      probe.once('error', () => resolve(false));
    });
  }

  private serve(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.setEncoding('utf8');
    const lines = new LineSplitter();
    let started = false;
    const ac = new AbortController();
    socket.once('close', () => ac.abort());
    socket.on('data', (chunk: string) => {
      if (started) return;
      const [line] = lines.push(chunk);
      if (line === undefined) {
        if (lines.pending > MAX_REQUEST_BYTES) {
          started = true;
          this.finish(socket, { error: 'request too long' });
        }
        return;
      }
      started = true;
      const work = this.answer(socket, line, ac.signal);
      this.inFlight.add(work);
      void work.finally(() => this.inFlight.delete(work));
    });
  }

  private async answer(socket: net.Socket, line: string, signal: AbortSignal): Promise<void> {
    let req: ControlRequest;
    try {
      req = JSON.parse(line) as ControlRequest;
      if (typeof req?.request !== 'string') throw new Error('no request name');
    } catch {
      this.finish(socket, { error: 'not a control request (one JSON line {"request": NAME, "args": ...})' });
      return;
    }
    const handler = this.handlers.get(req.request);
    if (!handler) {
      this.finish(socket, { error: `this drive does not answer "${req.request}" (it answers: ${this.requests.join(', ')})` });
      return;
    }
    const reply: Reply = {
      progress: (data) => {
        if (!socket.destroyed) socket.write(encodeFrame({ progress: data }));
      },
      signal,
    };
    try {
      this.finish(socket, { result: (await handler(req.args, reply)) ?? null });
    } catch (err) {
      this.finish(socket, { error: ((err as Error)?.message ?? String(err)).split('\n')[0]! });
    }
  }

  private finish(socket: net.Socket, frame: ControlFrame): void {
    if (socket.destroyed) return;
    socket.end(encodeFrame(frame));
  }

  /**
   * Stops taking requests and removes the socket at once; resolves once the requests in flight
   * are answered (their connections closed), at most CLOSE_GRACE_MS later. Safe to call twice.
   */
  close(graceMs = CLOSE_GRACE_MS): Promise<void> {
    return (this.closing ??= (async () => {
      const server = this.server;
      this.server = undefined;
      if (server) {
        server.close();
        await rm(this.path, { force: true }).catch(() => undefined);
      }
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, graceMs);
        timer.unref();
      });
      const ended = Promise.all([...this.sockets].map((s) => new Promise<void>((resolve) => (s.destroyed ? resolve() : s.once('close', () => resolve())))));
      await Promise.race([Promise.all([ended, ...this.inFlight]).then(() => undefined), grace]);
      clearTimeout(timer);
      for (const s of this.sockets) s.destroy();
    })());
  }
}
