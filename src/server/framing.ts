import { encodeLengthFrame, FRAME_HEADER_BYTES, LengthFrameDecoder } from '../common/frame.js';

/**
 * Wire framing (docs/protocol.md): each message is a length frame
 * (src/common/frame.ts: a 4-byte big-endian length) of UTF-8 JSON.
 */
export const HEADER_BYTES = FRAME_HEADER_BYTES;
export const DEFAULT_MAX_FRAME = 64 * 1024;

/**
 * A result already serialised to JSON text (a large answer built in chunks,
 * so that no single JSON.stringify blocks the event loop): encodeFrame puts
 * it into the response as it is.
 */
export class JsonText {
  constructor(readonly text: string) {}
}

function toJson(message: unknown): string {
  const m = message as { result?: unknown } | null;
  if (m === null || typeof m !== 'object' || !(m.result instanceof JsonText)) return JSON.stringify(message);
  const { result, ...rest } = m;
  const head = JSON.stringify(rest);
  return `${head.slice(0, -1)}${head.length > 2 ? ',' : ''}"result":${result.text}}`;
}

export function encodeFrame(message: unknown): Buffer {
  return encodeLengthFrame(Buffer.from(toJson(message), 'utf8'));
}

/**
 * Incremental decoder of messages: push() what arrives, get back whole frame
 * bodies. A length over the limit is fatal for the stream, so it throws
 * E_PROTOCOL (a FrameLengthError) and the caller answers once, then closes.
 */
export class FrameDecoder extends LengthFrameDecoder {
  constructor(maxFrame = DEFAULT_MAX_FRAME) {
    super({ maxFrame, what: 'message' });
  }
}
