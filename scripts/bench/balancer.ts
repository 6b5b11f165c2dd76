import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { freePort } from '../free-port.js';

/**
 * HAProxy (Debian's, installed by .ci/run) in front of N backends, as a scale-out recipe runs it
 * (README "Past one machine"): round robin, no sticky sessions, health-checked on /healthz every
 * 200 ms, a connection refused by a dead backend retried on another, WebSockets tunnelled.
 * Used by the scale-out test (test/helpers/balancer.ts) and the bench's `scale` group.
 */
export interface Balancer {
  url: string;
  child: ChildProcess;
  /** The last 64 kB of its stderr (with -db: its warnings, e.g. "Server servers/s1 is DOWN"). */
  stderr(): string;
  stop(): Promise<void>;
}

/** The HAProxy configuration for `backends` (host:port each) listening on `port`. */
export function haproxyConfig(port: number, backends: string[]): string {
  return `global
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 300s
  timeout server 300s
  timeout tunnel 1h
  retries 3
  option redispatch
  retry-on conn-failure empty-response
frontend stratus
  bind 127.0.0.1:${port}
  default_backend servers
backend servers
  balance roundrobin
  option httpchk GET /healthz
  http-check expect status 200
  timeout check 2s
  default-server inter 500ms fall 2 rise 1
${backends.map((b, i) => `  server s${i + 1} ${b} check`).join('\n')}
`;
}

/**
 * Starts `haproxy` with its configuration in `dir`, in front of `backends`; resolves once it
 * answers /healthz through to a backend. `stop()` (SIGTERM, wait for the exit) is safe to call
 * more than once; the caller must call it, also on failure after this resolved.
 */
export async function startHaproxy(dir: string, backends: string[]): Promise<Balancer> {
  const port = await freePort();
  const config = path.join(dir, 'haproxy.cfg');
  await fs.writeFile(config, haproxyConfig(port, backends));
  const child = spawn('haproxy', ['-f', config, '-db'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr = (stderr + c).slice(-64_000)));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  };
  try {
    // Ready once it answers through to a backend (its health checks have found one).
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`haproxy exited (${child.exitCode}): ${stderr}`);
      const ok = await fetch(`${url}/healthz`).then((r) => r.status === 200, () => false);
      if (ok) break;
      if (Date.now() > deadline) throw new Error(`haproxy did not serve within 15 s: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, child, stderr: () => stderr, stop };
}
