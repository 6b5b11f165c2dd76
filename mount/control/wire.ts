/**
 * The control socket's wire format: JSON lines over a unix socket. The client sends one line,
 * `{"request": NAME, "args": ...}`; the drive answers with any number of
 * `{"progress": ...}` lines, then exactly one `{"result": ...}` or `{"error": "one line"}`, and
 * closes the connection. One request per connection.
 */

export interface ControlRequest {
  request: string;
  args?: unknown;
}

export type ControlFrame = { progress: unknown } | { result: unknown } | { error: string };

/** The longest request line the drive reads (a request carries names and paths, not data). */
export const MAX_REQUEST_BYTES = 1024 * 1024;

export function encodeFrame(frame: ControlFrame | ControlRequest): string {
  return `${JSON.stringify(frame)}\n`;
}

/** Splits a byte stream into lines (a line may arrive in several chunks, several in one). */
export class LineSplitter {
  private rest = '';

  push(chunk: string): string[] {
    const text = this.rest + chunk;
    const lines = text.split('\n');
    this.rest = lines.pop() ?? '';
    return lines;
  }

  get pending(): number {
    return this.rest.length;
  }
}
