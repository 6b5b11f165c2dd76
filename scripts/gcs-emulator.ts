/**
 * A Google Cloud Storage JSON API emulator for trying `--blocks gs://…` locally and for the tests:
 *
 *   npm run gcs-emulator -- --port 9199
 *   export STORAGE_EMULATOR_HOST=http://127.0.0.1:9199    (printed on start)
 *   stratus serve --blocks gs://any-bucket/some/prefix …
 *
 * It is firebase-tools' pure-Node Cloud Storage emulator (pinned in package.json; see
 * ../shared/notes/services.md), started without the firebase CLI, which would download a rules
 * runtime (a JAR) first: the rules runtime is replaced by no-ops, the emulator gets `rules: []`
 * (admin access only, which is what a service account has), and it is started through
 * firebase-tools' emulator registry (its metadata links ask the registry for the host). Blobs go
 * to a temp folder of its own (the emulator deletes its blob folder on stop); metadata is in
 * memory only, so everything is gone when it stops. Buckets appear on first write.
 *
 * Not checked by the emulator (tests cover these another way): signatures of signed URLs,
 * preconditions (ifGenerationMatch), multi-chunk resumable uploads (silently truncated).
 *
 * Options: --port PORT (required), --host HOST (127.0.0.1), --project ID (stratus-local),
 * --exit-with-stdin (stop when stdin closes: a test's child that must not outlive its parent).
 * Runs until SIGINT/SIGTERM.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

/** The firebase-tools version whose internals this script relies on (the smoke test checks it). */
export const FIREBASE_TOOLS_VERSION = '15.34.2';

interface EmulatorArgs {
  host: string;
  port: number;
  projectId: string;
  rules: unknown[];
  auto_download: boolean;
}

interface StorageEmulatorInstance {
  getInfo(): { host: string; port: number };
}

interface FirebaseInternals {
  version: string;
  StorageEmulator: new (args: EmulatorArgs) => StorageEmulatorInstance;
  StorageRulesRuntime: { prototype: { start: unknown; stop: unknown } };
  EmulatorRegistry: { start(instance: StorageEmulatorInstance): Promise<void>; stop(name: string): Promise<void> };
}

/** The pieces of firebase-tools used here, each checked to be what it was when this was written. */
export function loadFirebaseInternals(): FirebaseInternals {
  const require = createRequire(import.meta.url);
  const pkg = require('firebase-tools/package.json') as { version: string };
  const { StorageEmulator } = require('firebase-tools/lib/emulator/storage/index.js') as { StorageEmulator?: FirebaseInternals['StorageEmulator'] };
  const { StorageRulesRuntime } = require('firebase-tools/lib/emulator/storage/rules/runtime.js') as {
    StorageRulesRuntime?: FirebaseInternals['StorageRulesRuntime'];
  };
  const { EmulatorRegistry } = require('firebase-tools/lib/emulator/registry.js') as { EmulatorRegistry?: FirebaseInternals['EmulatorRegistry'] };
  const problems: string[] = [];
  if (pkg.version !== FIREBASE_TOOLS_VERSION) problems.push(`firebase-tools is ${pkg.version}, this script was written for ${FIREBASE_TOOLS_VERSION}`);
  if (typeof StorageEmulator !== 'function') problems.push('lib/emulator/storage: StorageEmulator is gone');
  if (typeof StorageRulesRuntime?.prototype.start !== 'function' || typeof StorageRulesRuntime.prototype.stop !== 'function') {
    problems.push('lib/emulator/storage/rules/runtime: StorageRulesRuntime.start/stop are gone');
  }
  if (typeof EmulatorRegistry?.start !== 'function' || typeof EmulatorRegistry.stop !== 'function') problems.push('lib/emulator/registry: EmulatorRegistry.start/stop are gone');
  if (problems.length > 0) throw new Error(`the GCS emulator's firebase-tools internals moved: ${problems.join('; ')}`);
  return { version: pkg.version, StorageEmulator: StorageEmulator!, StorageRulesRuntime: StorageRulesRuntime!, EmulatorRegistry: EmulatorRegistry! };
}

function parseArgs(argv: string[]): { host: string; port: number; projectId: string; exitWithStdin: boolean } {
  let host = '127.0.0.1';
  let port = NaN;
  let projectId = 'stratus-local';
  let exitWithStdin = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    if (arg === '--port') port = Number(value());
    else if (arg === '--host') host = value();
    else if (arg === '--project') projectId = value();
    else if (arg === '--exit-with-stdin') exitWithStdin = true;
    else throw new Error(`unknown option ${arg} (usage: gcs-emulator --port PORT [--host HOST] [--project ID] [--exit-with-stdin])`);
  }
  if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new Error('--port PORT is required (1-65535)');
  return { host, port, projectId, exitWithStdin };
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  // The emulator keeps blobs under $TMPDIR/firebase/storage/blobs and removes that folder on stop:
  // a folder of its own, so two emulators (or anything else in /tmp) do not meet.
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stratus-gcs-emulator-'));
  process.env.TMPDIR = tmp;
  const fb = loadFirebaseInternals();
  // The rules runtime is a downloaded JAR (offline here); with `rules: []` nothing asks it anything.
  fb.StorageRulesRuntime.prototype.start = async () => undefined;
  fb.StorageRulesRuntime.prototype.stop = async () => undefined;
  const emulator = new fb.StorageEmulator({ host: opts.host, port: opts.port, projectId: opts.projectId, rules: [], auto_download: false });

  let stopping = false;
  const stop = async (code: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    try {
      await fb.EmulatorRegistry.stop('storage');
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
      process.exit(code);
    }
  };
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));
  if (opts.exitWithStdin) {
    process.stdin.on('end', () => void stop(0));
    process.stdin.on('error', () => void stop(0));
    process.stdin.resume();
  }

  try {
    await fb.EmulatorRegistry.start(emulator);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  process.stdout.write(
    `GCS emulator (firebase-tools ${fb.version} storage emulator) listening; blobs in ${tmp}, gone on stop. In another shell:\n` +
      `export STORAGE_EMULATOR_HOST=http://${host}:${opts.port}\n`,
  );
}

const invokedDirectly = process.argv[1] !== undefined && path.resolve(process.argv[1]).replace(/\.[jt]s$/, '') === new URL(import.meta.url).pathname.replace(/\.[jt]s$/, '');
if (invokedDirectly) {
  main().catch((err: unknown) => {
    process.stderr.write(`gcs-emulator: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
