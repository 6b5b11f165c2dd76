import type { Test } from 'tap';
import { startGcsEmulatorProcess, type GcsEmulatorProcess } from '../../scripts/gcs-emulator-process.js';

/**
 * A GCS JSON API emulator for a test (scripts/gcs-emulator-process.ts), stopped in teardown; its
 * environment (STORAGE_EMULATOR_HOST, the fake service account's key…) is applied to this
 * process's env until then, for GCS clients made in the test.
 */
export type GcsEmulator = Omit<GcsEmulatorProcess, 'stop'>;

export async function startGcsEmulator(t: Test, opts: { bucket?: string; projectId?: string } = {}): Promise<GcsEmulator> {
  const emulator = await startGcsEmulatorProcess(opts);
  t.teardown(() => emulator.stop());
  const saved = Object.fromEntries(Object.keys(emulator.env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, emulator.env);
  t.teardown(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  return emulator;
}
