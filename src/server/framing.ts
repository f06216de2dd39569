import { encodeLengthFrame, FRAME_HEADER_BYTES, FRAME_LENGTH_MAX, LengthFrameDecoder } from '../common/frame.js';

/**
 * Wire framing (docs/protocol.md): each message is a length frame
 * (src/common/frame.ts: a 4-byte big-endian length) of UTF-8 JSON.
 */
export const HEADER_BYTES = FRAME_HEADER_BYTES;
export const DEFAULT_MAX_FRAME = 64 * 1024;

/**
 * A result already serialised to JSON, as UTF-8 pieces (a large answer built a
 * slice at a time, so that no single JSON.stringify blocks the event loop and
 * no single string or buffer holds all of it): encodeFrameParts puts the pieces
 * into the response as they are, and the connection writes them in one go,
 * then calls release() (the pieces may be pooled memory: see json-chunks.ts).
 */
export class JsonText {
  readonly parts: readonly Buffer[];
  readonly byteLength: number;
  private onRelease: (() => void) | null;

  constructor(text: string | readonly Buffer[], onRelease?: () => void) {
    this.parts = typeof text === 'string' ? [Buffer.from(text, 'utf8')] : text;
    this.byteLength = this.parts.reduce((n, b) => n + b.length, 0);
    this.onRelease = onRelease ?? null;
  }

  /** Its pieces are written (or will never be): their memory may be reused. Once; later calls do nothing. */
  release(): void {
    const f = this.onRelease;
    this.onRelease = null;
    f?.();
  }
}

/** After a message's frame was written or dropped: a JsonText result's pieces are released. */
export function releaseFrame(message: unknown): void {
  const result = (message as { result?: unknown } | null)?.result;
  if (result instanceof JsonText) result.release();
}

/**
 * One message as a frame, in pieces to be written in order: the header with
 * the envelope, then a JsonText result's own pieces, uncopied. A message
 * without a JsonText result is one piece.
 */
export function encodeFrameParts(message: unknown): Buffer[] {
  const m = message as { result?: unknown } | null;
  if (m === null || typeof m !== 'object' || !(m.result instanceof JsonText)) {
    return [encodeLengthFrame(Buffer.from(JSON.stringify(message), 'utf8'))];
  }
  const { result, ...rest } = m;
  const envelope = JSON.stringify(rest);
  const head = Buffer.from(`${envelope.slice(0, -1)}${envelope.length > 2 ? ',' : ''}"result":`, 'utf8');
  const length = head.length + result.byteLength + CLOSE.length;
  if (length > FRAME_LENGTH_MAX) throw new RangeError(`a frame body of ${length} bytes does not fit a 4-byte length`);
  const header = Buffer.allocUnsafe(HEADER_BYTES + head.length);
  header.writeUInt32BE(length, 0);
  head.copy(header, HEADER_BYTES);
  return [header, ...result.parts, CLOSE];
}

export function encodeFrame(message: unknown): Buffer {
  const parts = encodeFrameParts(message);
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

const CLOSE = Buffer.from('}');

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
