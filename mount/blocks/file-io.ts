import type { FileHandle } from 'node:fs/promises';

/** Writes all of `bytes` at `position` (a write may take fewer at once). */
export async function writeFully(fh: FileHandle, bytes: Buffer, position: number): Promise<void> {
  for (let done = 0; done < bytes.length; ) done += (await fh.write(bytes, done, bytes.length - done, position + done)).bytesWritten;
}

/** Reads up to `length` bytes at `position` (fewer only at the end of the file). */
export async function readFully(fh: FileHandle, buf: Buffer, length: number, position: number): Promise<number> {
  let total = 0;
  while (total < length) {
    const { bytesRead } = await fh.read(buf, total, length - total, position + total);
    if (bytesRead === 0) break;
    total += bytesRead;
  }
  return total;
}
