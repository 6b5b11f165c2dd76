import fs from 'node:fs/promises';
import path from 'node:path';
import { StratusClient } from '../../protocol/client.js';
import { startGcsEmulatorProcess } from '../gcs-emulator-process.js';
import { fmtSize, MiB, runQuiet, uploadFile, writeRandomFile } from './helpers.js';
import { catSeconds, dropAllPageCache } from './mount.js';
import type { Section } from './report.js';
import { addUser, startMount, startServe } from './serve-process.js';

/**
 * A cold sequential read through a drive whose server keeps blocks on GCS (the emulator of the
 * tests, scripts/gcs-emulator.ts, on loopback): by signed URL (the default: the drive reads the
 * bytes from the store) against through the backend (`serve --no-signed-urls`), same data, same
 * run; native disk as the baseline. Each read on a fresh cache folder of a fresh mount.
 */

const MB = 1e6;

export async function benchGcsRead(workDir: string, o: { fileMiB: number; log(msg: string): void }): Promise<Section> {
  const work = await fs.mkdtemp(path.join(workDir, 'gcs-'));
  const emulator = await startGcsEmulatorProcess({ bucket: 'stratus-bench' });
  try {
    const serverData = path.join(work, 'server');
    const blocks = emulator.blocksUrl('bench');
    const token = await addUser('bench', ['--data', serverData]);
    const size = o.fileMiB * MiB;
    const native = path.join(work, 'read.bin');
    const dropAll = await dropAllPageCache();
    const drop = async () => {
      await runQuiet('sync', []);
      if (dropAll) await fs.writeFile('/proc/sys/vm/drop_caches', '3');
      else await runQuiet('dd', [`if=${native}`, 'iflag=nocache', 'count=0', 'status=none']);
    };

    /** A server on the same data and bucket (`extra` flags), a fresh drive on it, one cold `cat`. */
    const coldRead = async (extra: string[], upload: boolean): Promise<number> => {
      const server = await startServe(['--data', serverData, '--blocks', blocks, ...extra], emulator.env);
      try {
        if (upload) {
          o.log(`gcs: writing ${fmtSize(size)} of random bytes, uploading them to the GCS emulator through the API`);
          await writeRandomFile(native, size);
          const client = new StratusClient({ server: server.url, token, connections: 8 });
          try {
            const [root, config] = await Promise.all([client.root(), client.config()]);
            await uploadFile({ client, root, config }, native, 'read.bin');
          } finally {
            await client.close();
          }
        }
        const mountpoint = await fs.mkdtemp(path.join(work, 'mnt-'));
        const cacheDir = await fs.mkdtemp(path.join(work, 'cache-'));
        const mount = await startMount({ mountpoint, server: server.url, token, cacheDir, cacheSize: `${Math.ceil((2 * size) / MiB)}MB` });
        try {
          await drop();
          o.log(`gcs: cold read ${extra.length ? 'through the backend' : 'by signed URL'}`);
          const s = await catSeconds(path.join(mountpoint, 'read.bin'));
          await runQuiet('cmp', [path.join(mountpoint, 'read.bin'), native]);
          return s;
        } finally {
          await mount.stop();
          await fs.rm(cacheDir, { recursive: true, force: true });
          await fs.rmdir(mountpoint);
        }
      } finally {
        await server.stop();
      }
    };

    const signed = await coldRead([], true);
    const direct = await coldRead(['--no-signed-urls'], false);
    await drop();
    const nativeCold = await catSeconds(native);
    const mbs = (s: number) => size / MB / s;
    return {
      title: `GCS: cold sequential read of a ${fmtSize(size)} file through a drive, blocks on the GCS emulator (loopback)`,
      figures: [
        { what: 'by signed URL: the drive reads from the store (MB/s)', stratus: mbs(signed), native: mbs(nativeCold) },
        { what: 'through the backend, `serve --no-signed-urls` (MB/s)', stratus: mbs(direct), native: mbs(nativeCold) },
      ],
      notes: [
        `signed URL / through the backend: ${(direct / signed).toFixed(2)}×.`,
        'The store is firebase-tools\' storage emulator, one Node process on this machine: it bounds both rows, and real GCS behaves differently (latency per request, throughput per object). What the rows show is the cost of the extra hop through the backend and its CPU, not GCS speed.',
        dropAll ? 'Page cache dropped before each read (all of it).' : 'Page cache dropped per file with dd iflag=nocache (not root): the emulator\'s blobs may stay cached.',
      ],
    };
  } finally {
    await emulator.stop();
    await fs.rm(work, { recursive: true, force: true });
  }
}
