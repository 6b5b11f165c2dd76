import { join } from 'node:path';
import { Command } from 'commander';
import { Presets, SingleBar } from 'cli-progress';
import { askDrive } from '../mount/control/client.js';
import type { PinProgress, PinSummary } from '../mount/pins/pin-manager.js';
import { humanSize as size } from './display.js';
import { locateOnDrive, type DrivePath } from './drive-path.js';

/**
 * `stratus pin PATH` / `stratus unpin PATH` (DESIGN §7): asks the drive holding PATH over its
 * control socket (mount/pins/requests.ts). A pin shows a progress bar on a terminal (files,
 * bytes, rate, ETA) while the drive fetches; Ctrl-C stops watching, not the drive's fetch.
 */

/** The path in the drive ("/a/b") of a path on it. */
function inDrive(at: DrivePath): string {
  return `/${at.names.join('/')}`;
}

/** The drive's message, naming the path as the user gave it rather than as the drive knows it. */
function asGiven(err: unknown, at: DrivePath): Error {
  let message = (err as Error).message ?? String(err);
  // Another pin it names ("as part of /a"): as a path on the drive's mountpoint.
  message = message.replace(/ as part of (\/.*): unpin that$/, (_m, p: string) => ` as part of ${join(at.drive.mountpoint, p)}: unpin that`);
  const path = inDrive(at);
  if (path === '/') return new Error(message);
  return new Error(message.replace(new RegExp(`(^|[ (])${escape(path)}(?=$|[:, )])`, 'g'), `$1${at.shown}`));
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** A progress bar on stderr while a terminal watches; nothing otherwise. */
function progressBar(): { update(p: PinProgress): void; stop(): void } {
  if (!process.stderr.isTTY) return { update: () => undefined, stop: () => undefined };
  const bar = new SingleBar(
    {
      stream: process.stderr,
      format: ' {bar} {percentage}% | {files}/{totalFiles} files | {done} of {all} | {rate}/s | ETA {eta_formatted}',
      hideCursor: true,
      etaBuffer: 50,
      clearOnComplete: false,
    },
    Presets.shades_classic,
  );
  let started = false;
  const t0 = Date.now();
  let first = 0;
  return {
    update(p) {
      const payload = {
        files: p.files,
        totalFiles: p.totalFiles,
        done: size(p.bytes),
        all: size(p.totalBytes),
        rate: size(Math.round(((p.bytes - first) * 1000) / Math.max(1, Date.now() - t0))),
      };
      if (!started) {
        started = true;
        first = p.bytes;
        bar.start(Math.max(1, p.totalBytes), p.bytes, payload);
      } else bar.update(p.bytes, payload);
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

export function pinCommand(): Command {
  return new Command('pin')
    .description('make a folder or file on a mounted drive available offline: fetch every block under it (with a progress bar) and keep them, and what arrives under it later, out of cache eviction')
    .argument('<path>', 'a folder or file on a mounted drive')
    .option('--json', 'print the result as JSON')
    .action(async (given: string, opts: { json?: boolean }) => {
      const at = await locateOnDrive(given);
      const bar = progressBar();
      let result: PinSummary & { fetchedBytes: number };
      try {
        result = (await askDrive(at.drive.mountpoint, 'pin', { path: inDrive(at) }, { onProgress: (p) => bar.update(p as PinProgress) })) as typeof result;
      } catch (err) {
        throw asGiven(err, at);
      } finally {
        bar.stop();
      }
      if (opts.json) process.stdout.write(`${JSON.stringify({ ...result, path: given }, null, 2)}\n`);
      else process.stdout.write(`pinned ${given}: ${result.files} file(s), ${size(result.bytes)} kept offline (${size(result.fetchedBytes)} fetched now)\n`);
    });
}

export function unpinCommand(): Command {
  return new Command('unpin')
    .description('release a pinned folder or file: its blocks become ordinary cache entries again (evicted when room is needed)')
    .argument('<path>', 'a pinned folder or file on a mounted drive')
    .option('--json', 'print the result as JSON')
    .action(async (given: string, opts: { json?: boolean }) => {
      const at = await locateOnDrive(given);
      const result = (await askDrive(at.drive.mountpoint, 'unpin', { path: inDrive(at) }).catch((err: unknown) => {
        throw asGiven(err, at);
      })) as PinSummary;
      if (opts.json) process.stdout.write(`${JSON.stringify({ ...result, path: given }, null, 2)}\n`);
      else process.stdout.write(`unpinned ${given}: ${result.files} file(s), ${size(result.bytes)} are ordinary cache entries again\n`);
    });
}
