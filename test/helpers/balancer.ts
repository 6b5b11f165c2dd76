import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { freePort } from './ports.js';

/**
 * HAProxy (Debian's, installed by .ci/run) in front of N backends, as a scale-out recipe runs it
 * (README "Past one machine"): round robin, no sticky sessions, health-checked on /healthz every
 * 200 ms, a connection refused by a dead backend retried on another, WebSockets tunnelled.
 */
export interface Balancer {
  url: string;
  child: ChildProcess;
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
  default-server inter 200ms fall 1 rise 1
${backends.map((b, i) => `  server s${i + 1} ${b} check`).join('\n')}
`;
}

export async function startBalancer(t: { teardown(fn: () => unknown): void }, dir: string, backends: string[]): Promise<Balancer> {
  const port = await freePort();
  const config = path.join(dir, 'haproxy.cfg');
  await fs.writeFile(config, haproxyConfig(port, backends));
  const child = spawn('haproxy', ['-f', config, '-db'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  };
  t.teardown(stop);
  // Ready once it answers through to a backend (its health checks have found one).
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`haproxy exited (${child.exitCode}): ${stderr}`);
    const ok = await fetch(`${url}/healthz`).then((r) => r.status === 200, () => false);
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`haproxy did not serve within 15 s: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url, child, stop };
}
