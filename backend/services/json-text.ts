import { ApiError } from '../../protocol/errors.js';

/** Deeper than any body of the API (a commit is 3 levels): deeper nesting is refused before parsing. */
const MAX_DEPTH = 32;
const utf8 = new TextDecoder('utf-8', { fatal: true });

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN = new Set([0x5b, 0x7b]); // [ {
const CLOSE = new Set([0x5d, 0x7d]); // ] }

/**
 * A request body's JSON: 400 when the bytes are not UTF-8 (never replaced and stored), nest
 * deeper than MAX_DEPTH (found by one pass over the bytes, before JSON.parse: 16 MB of `[[[…`
 * took the parser 3.6 s), or are not JSON.
 */
export function parseJsonBody(bytes: Uint8Array): unknown {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new ApiError('malformed_json', 'the request body is not valid UTF-8');
  }
  let depth = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (inString) {
      if (b === BACKSLASH) i++;
      else if (b === QUOTE) inString = false;
    } else if (b === QUOTE) inString = true;
    else if (OPEN.has(b)) {
      if (++depth > MAX_DEPTH) throw new ApiError('malformed_json', `JSON nested deeper than ${MAX_DEPTH} levels`);
    } else if (CLOSE.has(b)) depth--;
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new ApiError('malformed_json', `malformed JSON: ${(err as Error).message}`);
  }
}
