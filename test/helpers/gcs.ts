import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import { freePort } from './ports.js';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';

/**
 * A GCS JSON API emulator for a test: scripts/gcs-emulator.ts (firebase-tools' storage emulator)
 * as a child process on a free port, waited for by HTTP, stopped in teardown (and it exits by
 * itself when this process dies: its stdin closes). Comes with a fake service-account key (a
 * locally generated RSA key) so that the client can sign URLs, and the environment the GCS store
 * reads: STORAGE_EMULATOR_HOST, GOOGLE_APPLICATION_CREDENTIALS, METADATA_SERVER_DETECTION=none
 * (never probe 169.254.169.254).
 */

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const script = path.join(root, 'scripts/gcs-emulator.ts');

export interface GcsEmulator {
  /** http://127.0.0.1:PORT */
  host: string;
  bucket: string;
  projectId: string;
  /** The fake service account's key file, and its parts. */
  keyFile: string;
  clientEmail: string;
  publicKeyPem: string;
  /** For child processes (a backend with `--blocks gs://…`). Also applied to this process's env until teardown. */
  env: Record<string, string>;
  /** `gs://BUCKET/PREFIX`, a fresh prefix when none is given: tests sharing the emulator do not meet. */
  blocksUrl(prefix?: string): string;
}


async function waitForHttp(url: string, child: ChildProcess, stderr: () => string, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the GCS emulator exited (${child.exitCode ?? child.signalCode}): ${stderr()}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > until) throw new Error(`the GCS emulator did not answer ${url} within ${timeoutMs} ms: ${stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Spawns the emulator script (through tsx, resolved from this project, whatever the cwd). */
export function spawnGcsEmulator(port: number, extraArgs: string[] = []): ChildProcess {
  const tsx = import.meta.resolve('tsx');
  return spawn(process.execPath, ['--import', tsx, script, '--port', String(port), '--exit-with-stdin', ...extraArgs], {
    cwd: os.tmpdir(),
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, NODE_OPTIONS: '' },
  });
}

export async function startGcsEmulator(t: Test, opts: { bucket?: string; projectId?: string } = {}): Promise<GcsEmulator> {
  const bucket = opts.bucket ?? 'stratus-test';
  const projectId = opts.projectId ?? 'stratus-test';
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-gcs-key-'));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const clientEmail = `stratus-test@${projectId}.iam.gserviceaccount.com`;
  const keyFile = path.join(dir, 'service-account.json');
  await fs.writeFile(
    keyFile,
    JSON.stringify({
      type: 'service_account',
      project_id: projectId,
      private_key_id: crypto.randomBytes(20).toString('hex'),
      private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
      client_email: clientEmail,
      client_id: '100000000000000000000',
      // Never used (requests to an emulator are not authenticated); unreachable on purpose.
      token_uri: 'http://127.0.0.1:9/token',
    }),
    { mode: 0o600 },
  );

  let child: ChildProcess | undefined;
  let port = 0;
  let err = '';
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    err = '';
    child = spawnGcsEmulator(port, ['--project', projectId]);
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout!.resume();
    const c = child;
    t.teardown(async () => {
      if (c.exitCode !== null || c.signalCode !== null) return;
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      const timer = setTimeout(() => c.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    });
    try {
      await waitForHttp(`http://127.0.0.1:${port}/storage/v1/b/${bucket}/o?maxResults=1`, child, () => err, 30_000);
      break;
    } catch (e) {
      // The free port was taken meanwhile: another one.
      if (attempt < 2 && /EADDRINUSE/.test(err)) continue;
      throw e;
    }
  }

  const host = `http://127.0.0.1:${port}`;
  const env: Record<string, string> = {
    STORAGE_EMULATOR_HOST: host,
    GOOGLE_APPLICATION_CREDENTIALS: keyFile,
    GOOGLE_CLOUD_PROJECT: projectId,
    METADATA_SERVER_DETECTION: 'none',
  };
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  t.teardown(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  return {
    host,
    bucket,
    projectId,
    keyFile,
    clientEmail,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    env,
    blocksUrl: (prefix) => `gs://${bucket}/${prefix ?? `t-${crypto.randomBytes(4).toString('hex')}`}`,
  };
}
