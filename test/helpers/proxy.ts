import net from 'node:net';

/**
 * A TCP proxy in front of a server, so a test can take one mount offline while the others stay
 * connected (HTTP and the WebSocket both go through it: it forwards bytes, it knows no protocol).
 *
 * - `pause('refuse')` (default): every open connection is reset and new ones are reset as soon
 *   as they arrive — what a client sees when the server is down.
 * - `pause('blackhole')`: open connections stop carrying bytes and new ones are accepted but
 *   never answered — a network that silently drops packets (a laptop leaving the Wi-Fi); only a
 *   client's own deadline gets it out.
 * - `resume()`: whatever the pause held is reset (so a blackholed request fails at once), and new
 *   connections are forwarded again.
 */

interface Teardown {
  teardown(fn: () => unknown): void;
}

export type PauseMode = 'refuse' | 'blackhole';

export interface Proxy {
  /** http://127.0.0.1:PORT — give it to a mount as its --server. */
  url: string;
  state(): 'forwarding' | PauseMode;
  /** Connections currently forwarded (client side). */
  connections(): number;
  pause(mode?: PauseMode): void;
  resume(): void;
  close(): Promise<void>;
}

export async function startProxy(t: Teardown, target: string): Promise<Proxy> {
  const upstream = new URL(target);
  const host = upstream.hostname.replace(/^\[|\]$/g, '');
  const port = Number(upstream.port || 80);
  let mode: 'forwarding' | PauseMode = 'forwarding';
  /** Forwarded pairs: client socket → upstream socket. */
  const pairs = new Map<net.Socket, net.Socket>();
  /** Sockets a blackhole holds (accepted, never answered, or frozen pairs). */
  const held = new Set<net.Socket>();

  const reset = (s: net.Socket) => {
    if (!s.destroyed) s.resetAndDestroy();
  };

  const server = net.createServer({ pauseOnConnect: true }, (client) => {
    client.on('error', () => undefined);
    if (mode === 'refuse') return reset(client);
    if (mode === 'blackhole') {
      held.add(client);
      client.once('close', () => held.delete(client));
      return;
    }
    const up = net.connect({ host, port });
    up.on('error', () => undefined);
    pairs.set(client, up);
    const drop = () => {
      pairs.delete(client);
      reset(client);
      reset(up);
    };
    client.once('close', drop);
    up.once('close', drop);
    up.once('connect', () => {
      client.pipe(up);
      up.pipe(client);
      client.resume();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address() as net.AddressInfo;

  const pause = (how: PauseMode = 'refuse') => {
    mode = how;
    for (const [client, up] of [...pairs]) {
      if (how === 'refuse') {
        pairs.delete(client);
        reset(client);
        reset(up);
      } else {
        // Frozen: no byte moves either way until resume() resets them.
        client.unpipe(up);
        up.unpipe(client);
        client.pause();
        up.pause();
        pairs.delete(client);
        held.add(client);
        held.add(up);
        client.once('close', () => held.delete(client));
        up.once('close', () => held.delete(up));
      }
    }
  };
  const resume = () => {
    for (const s of [...held]) reset(s);
    held.clear();
    mode = 'forwarding';
  };
  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= new Promise<void>((resolve) => {
      pause('refuse');
      resume();
      server.close(() => resolve());
    }));
  t.teardown(close);
  return {
    url: `http://127.0.0.1:${address.port}`,
    state: () => mode,
    connections: () => pairs.size,
    pause,
    resume,
    close,
  };
}
