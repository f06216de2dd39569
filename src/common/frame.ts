/**
 * Length framing, once for every stream the broker speaks
 * (docs/protocol.md; native-bindings/include/netrelay.h; the zygote's pipes): a frame
 * is a 4-byte big-endian length, then that many bytes of body. A length prefix
 * makes half-written and oversized frames detectable before any parsing.
 *
 * Bodies are opaque here: JSON (src/server/framing.ts), relay requests and
 * replies (src/upcall/dns/relay-transport.ts), zygote frames. A bad length is
 * fatal for its stream (there is no way to resync): the decoder throws a
 * FrameLengthError (E_PROTOCOL) and the caller ends the stream.
 */
import { BrokerError } from './errors.js';
import { W } from './wire-constants.js';

/** UB_FRAME_HEADER of native-bindings/include/ub-wire.h. */
export const FRAME_HEADER_BYTES = W.UB_FRAME_HEADER;
/** The largest length the header can hold. */
export const FRAME_LENGTH_MAX = 0xffff_ffff;

/** One frame: the header, then the parts of the body as they are (no copy of the body beyond the one concat). */
export function encodeLengthFrame(...body: readonly Uint8Array[]): Buffer {
  const length = body.reduce((n, b) => n + b.length, 0);
  if (length > FRAME_LENGTH_MAX) throw new RangeError(`a frame body of ${length} bytes does not fit a 4-byte length`);
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  header.writeUInt32BE(length, 0);
  return Buffer.concat([header, ...body], FRAME_HEADER_BYTES + length);
}

/** Bounds a decoder checks each length against, before its body arrives. */
export interface FrameBounds {
  /** Largest body accepted, bytes. */
  maxFrame: number;
  /** Smallest body accepted, bytes (default 0: an empty frame is a frame). */
  minFrame?: number;
  /** What a frame is called in errors ("message", "relay reply"). */
  what?: string;
}

/** A length outside a decoder's bounds; the stream it came from is lost. */
export class FrameLengthError extends BrokerError {
  constructor(readonly length: number, readonly bound: 'max' | 'min', readonly limit: number, what: string) {
    super('E_PROTOCOL', bound === 'max'
      ? `${what} of ${length} bytes is over the limit of ${limit}`
      : `${what} of ${length} bytes is under the minimum of ${limit}`, { limit });
  }
}

/**
 * Incremental decoder: push() what arrives, get back the whole frame bodies it
 * completes, in order. Chunks are kept in a list and joined once per frame, so
 * a frame of a few MiB arriving in 64 KiB reads is not copied per read. A
 * length out of bounds throws FrameLengthError and drops what was buffered.
 */
export class LengthFrameDecoder {
  private chunks: Buffer[] = [];
  private size = 0;
  private readonly maxFrame: number;
  private readonly minFrame: number;
  private readonly what: string;

  constructor(bounds: FrameBounds) {
    this.maxFrame = bounds.maxFrame;
    this.minFrame = bounds.minFrame ?? 0;
    this.what = bounds.what ?? 'frame';
  }

  push(chunk: Buffer): Buffer[] {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.size += chunk.length;
    }
    const frames: Buffer[] = [];
    while (this.size >= FRAME_HEADER_BYTES) {
      const len = this.head().readUInt32BE(0);
      if (len > this.maxFrame) this.refuse(len, 'max', this.maxFrame);
      if (len < this.minFrame) this.refuse(len, 'min', this.minFrame);
      if (this.size < FRAME_HEADER_BYTES + len) break;
      frames.push(this.take(FRAME_HEADER_BYTES + len).subarray(FRAME_HEADER_BYTES));
    }
    return frames;
  }

  /** Bytes of an unfinished frame still held (a half-written frame at close). */
  get pending(): number {
    return this.size;
  }

  private refuse(len: number, bound: 'max' | 'min', limit: number): never {
    this.chunks = [];
    this.size = 0;
    throw new FrameLengthError(len, bound, limit, this.what);
  }

  private head(): Buffer {
    if (this.chunks[0]!.length < FRAME_HEADER_BYTES) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!;
  }

  private take(n: number): Buffer {
    const joined = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const rest = joined.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.size = rest.length;
    return joined.subarray(0, n);
  }
}
