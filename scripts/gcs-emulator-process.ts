import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './free-port.js';

/**
 * The GCS JSON API emulator (gcs-emulator.ts) as a child process on a free port, waited for by
 * HTTP, for the tests and the bench. It exits by itself when the parent dies (its stdin closes).
 * Comes with a fake service-account key (a locally generated RSA key) so that the GCS client can
 * sign URLs, and the environment the GCS store reads: STORAGE_EMULATOR_HOST,
 * GOOGLE_APPLICATION_CREDENTIALS, METADATA_SERVER_DETECTION=none (never probe 169.254.169.254).
 */

const here = path.dirname(fileURLToPath(import.meta.url));
/** The emulator script next to this module: gcs-emulator.ts under tsx (tests), .js once compiled (bench). */
const compiled = import.meta.url.endsWith('.js');
const script = path.join(here, compiled ? 'gcs-emulator.js' : 'gcs-emulator.ts');

export interface GcsEmulatorProcess {
  /** http://127.0.0.1:PORT */
  host: string;
  bucket: string;
  projectId: string;
  /** The fake service account's key file, and its parts. */
  keyFile: string;
  clientEmail: string;
  publicKeyPem: string;
  /** For processes using the store (`stratus serve --blocks gs://…`). */
  env: Record<string, string>;
  /** `gs://BUCKET/PREFIX`, a fresh prefix when none is given: users of one emulator do not meet. */
  blocksUrl(prefix?: string): string;
  /** Stops the emulator (its blobs go with it) and removes the key. */
  stop(): Promise<void>;
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

/** Spawns the emulator script (through tsx when it is the TypeScript source, resolved from this project, whatever the cwd). */
function spawnGcsEmulator(port: number, extraArgs: string[] = []): ChildProcess {
  const loader = compiled ? [] : ['--import', import.meta.resolve('tsx')];
  return spawn(process.execPath, [...loader, script, '--port', String(port), '--exit-with-stdin', ...extraArgs], {
    cwd: os.tmpdir(),
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, NODE_OPTIONS: '' },
  });
}

async function stopChild(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise((r) => c.once('exit', r));
  c.kill('SIGTERM');
  const timer = setTimeout(() => c.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

export async function startGcsEmulatorProcess(opts: { bucket?: string; projectId?: string } = {}): Promise<GcsEmulatorProcess> {
  const bucket = opts.bucket ?? 'stratus-test';
  const projectId = opts.projectId ?? 'stratus-test';
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stratus-gcs-key-'));
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

  const children: ChildProcess[] = [];
  const stop = async () => {
    await Promise.all(children.map(stopChild));
    await fs.rm(dir, { recursive: true, force: true });
  };
  let port = 0;
  try {
    for (let attempt = 0; ; attempt++) {
      port = await freePort();
      let err = '';
      const child = spawnGcsEmulator(port, ['--project', projectId]);
      children.push(child);
      child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      child.stdout!.resume();
      try {
        await waitForHttp(`http://127.0.0.1:${port}/storage/v1/b/${bucket}/o?maxResults=1`, child, () => err, 30_000);
        break;
      } catch (e) {
        // The free port was taken meanwhile: another one.
        if (attempt < 2 && /EADDRINUSE/.test(err)) continue;
        throw e;
      }
    }
  } catch (err) {
    await stop();
    throw err;
  }

  const host = `http://127.0.0.1:${port}`;
  return {
    host,
    bucket,
    projectId,
    keyFile,
    clientEmail,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    env: {
      STORAGE_EMULATOR_HOST: host,
      GOOGLE_APPLICATION_CREDENTIALS: keyFile,
      GOOGLE_CLOUD_PROJECT: projectId,
      METADATA_SERVER_DETECTION: 'none',
    },
    blocksUrl: (prefix) => `gs://${bucket}/${prefix ?? `t-${crypto.randomBytes(4).toString('hex')}`}`,
    stop,
  };
}
