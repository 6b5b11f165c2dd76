import { execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const run = promisify(execFile);
/** dist/cli/main.js, from dist/scripts/bench/ (compiled) */
export const stratusBin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'cli', 'main.js');

/** `stratus user add NAME` in its own process; the token is the last line. */
export async function addUser(name: string, args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [stratusBin, 'user', 'add', name, ...args]);
  return stdout.trim().split('\n').at(-1)!;
}

/** `stratus serve` as its own process (so client and server do not share an event loop); resolves once it serves. */
export function startServe(args: string[]): Promise<{ url: string; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [stratusBin, 'serve', '--listen', '127.0.0.1:0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      err += chunk;
      const match = /serving on (http:\/\/\S+)/.exec(err);
      if (match?.[1]) {
        resolve({
          url: match[1],
          stop: () =>
            new Promise<void>((done) => {
              child.once('exit', () => done());
              child.kill('SIGTERM');
            }),
        });
      }
    });
    child.once('exit', (code) => reject(new Error(`stratus serve exited with ${code}: ${err}`)));
  });
}
