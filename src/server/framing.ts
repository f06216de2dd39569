import { BrokerError } from '../common/errors.js';

/**
 * Wire framing (docs/protocol.md): each message is a 4-byte big-endian length
 * followed by that many bytes of UTF-8 JSON. A length prefix makes half-written
 * and oversized messages detectable before any parsing, and is easy from C.
 */
export const HEADER_BYTES = 4;
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
  const body = Buffer.from(toJson(message), 'utf8');
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt32BE(body.length, 0);
  return Buffer.concat([header, body]);
}

/**
 * Incremental decoder: push() what arrives, get back whole frame bodies. A
 * length over the limit is fatal for the stream (there is no way to resync), so
 * it throws E_PROTOCOL and the caller answers once, then closes.
 */
export class FrameDecoder {
  private buffered: Buffer = Buffer.alloc(0);

  constructor(private readonly maxFrame = DEFAULT_MAX_FRAME) {}

  push(chunk: Buffer): Buffer[] {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const frames: Buffer[] = [];
    while (this.buffered.length >= HEADER_BYTES) {
      const len = this.buffered.readUInt32BE(0);
      if (len > this.maxFrame) {
        this.buffered = Buffer.alloc(0);
        throw new BrokerError('E_PROTOCOL', `message of ${len} bytes is over the limit of ${this.maxFrame}`, { limit: this.maxFrame });
      }
      if (this.buffered.length < HEADER_BYTES + len) break;
      frames.push(this.buffered.subarray(HEADER_BYTES, HEADER_BYTES + len));
      this.buffered = this.buffered.subarray(HEADER_BYTES + len);
    }
    return frames;
  }

  /** Bytes of an unfinished message still held (a half-written message at close). */
  get pending(): number {
    return this.buffered.length;
  }
}
