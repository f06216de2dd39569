import type { Socket } from 'node:net';
import { BrokerError } from '../common/errors.js';
import { PROTOCOL_VERSION } from '../common/paths.js';
import type { Clock, Logger } from '../common/tokens.js';
import { encodeFrame, encodeFrameParts, FrameDecoder, releaseFrame } from './framing.js';
import { type Limits, TokenBucket } from './limits.js';
import { errorResponse, parseRequest, type Request, type RequestId, type Response } from './protocol.js';

export interface ConnectionHooks {
  /** Reserve the tenant's and the pool's slot for one request (throws E_BUSY); returns its release. */
  admit(): () => void;
  dispatch(request: Request): Promise<Response>;
}

/**
 * One accepted connection: frames in, requests dispatched, replies out, with
 * every limit that holds per connection (docs/security.md, "Limits").
 *
 * Replies are never queued without bound for a peer that does not read. Past
 * `replyBufferBytes` queued, no more frames are read or handled (the kernel's
 * socket buffer then fills and the peer's writes block): what is queued is
 * then at most that plus the replies of the requests in flight, and a tenant
 * that reads none of it for idleTimeoutMs is closed. A request's slots are
 * released when its reply has been handed to the kernel (or the connection
 * closed), not when it was queued. Every frame, malformed or not, takes a
 * token of the rate limit.
 */
export class Connection {
  private readonly decoder: FrameDecoder;
  private readonly bucket: TokenBucket;
  private inFlight = 0;
  /** Frames read but not handled yet (reading stopped for a full reply queue). */
  private frames: Buffer[] = [];
  private next = 0;
  private closing = false;
  private turnScheduled = false;
  /** Releases of requests whose replies are not yet written: all run at close. */
  private readonly unreleased = new Set<() => void>();

  constructor(
    private readonly socket: Socket,
    private readonly limits: Limits,
    private readonly hooks: ConnectionHooks,
    private readonly log: Logger,
    /** Idle and unread connections are closed after limits.idleTimeoutMs (tenants; not host root). */
    timed: boolean,
    /** The rate limit's time (monotonic ms). */
    private readonly clock: Pick<Clock, 'monotonic'>,
  ) {
    this.decoder = new FrameDecoder(limits.maxMessageBytes);
    this.bucket = new TokenBucket(limits.messagesPerSecond, limits.messageBurst, clock.monotonic());
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.handleFrames());
    socket.once('close', () => {
      for (const release of [...this.unreleased]) release();
      this.frames = [];
    });
    if (timed && limits.idleTimeoutMs > 0) {
      socket.setTimeout(limits.idleTimeoutMs);
      socket.on('timeout', () => this.onTimeout());
    }
  }

  private onData(chunk: Buffer): void {
    if (this.closing) return;
    let frames: Buffer[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      // Over the frame size: the stream cannot be resynchronised. Answer once, then close.
      this.closing = true;
      endWithAnswer(this.socket, encodeFrame(errorResponse(null, err)));
      return;
    }
    if (frames.length === 0) return;
    this.frames = this.next < this.frames.length ? [...this.frames.slice(this.next), ...frames] : frames;
    this.next = 0;
    this.handleFrames();
  }

  /**
   * Handle read frames while the reply queue is under its bound; stop reading
   * when it is over. At most FRAMES_PER_TURN at a time, then the rest in a later
   * turn of the event loop: a flood of small frames on many connections must
   * not keep the broker from accepting and serving other peers meanwhile.
   */
  private handleFrames(): void {
    for (let handled = 0; this.next < this.frames.length; handled++) {
      if (this.socket.destroyed || this.closing) return;
      if (this.socket.writableLength > this.limits.replyBufferBytes) {
        this.socket.pause(); // resumed on 'drain'
        return;
      }
      if (handled === FRAMES_PER_TURN) {
        this.socket.pause();
        if (!this.turnScheduled) {
          this.turnScheduled = true;
          setImmediate(() => {
            this.turnScheduled = false;
            this.handleFrames();
          });
        }
        return;
      }
      const body = this.frames[this.next]!;
      this.frames[this.next++] = EMPTY;
      this.handle(body);
    }
    this.frames = [];
    this.next = 0;
    if (!this.closing && !this.socket.destroyed && this.socket.isPaused()) this.socket.resume();
  }

  private handle(body: Buffer): void {
    // The token is taken before parsing: malformed frames are held to the rate too, and a frame
    // over the rate is not parsed at all (only its id is looked for), so a flood costs little.
    if (!this.bucket.take(this.clock.monotonic())) return this.reply({ v: PROTOCOL_VERSION, id: peekId(body), ok: false, error: OVER_RATE });
    const { id, request, error } = parseRequest(body);
    if (!request) return this.reply(errorResponse(id, error));
    let release: () => void;
    try {
      if (this.inFlight >= this.limits.connectionInFlight) throw new BrokerError('E_BUSY', 'too many requests in flight on this connection');
      release = this.hooks.admit();
    } catch (err) {
      return this.reply(errorResponse(id, err));
    }
    this.inFlight++;
    let released = false;
    const done = (): void => {
      if (released) return;
      released = true;
      this.unreleased.delete(done);
      this.inFlight--;
      release();
    };
    this.unreleased.add(done);
    void this.hooks.dispatch(request).then((response) => this.reply(response, done));
  }

  /** Queue one reply; `done` runs once it is written to the kernel, or the connection is gone. */
  private reply(response: Response, settled: () => void = noop): void {
    const done = (): void => {
      releaseFrame(response);
      settled();
    };
    const s = this.socket;
    if (s.destroyed || !s.writable) return done();
    // Over replyBufferBytes no more frames are read (handleFrames), so what can still come is the replies of
    // the requests in flight (connectionInFlight at most); a peer that reads none of them is timed out.
    // A reply in pieces (a large `list`) goes out as one writev, the pieces uncopied: corked, so nothing
    // else is written between them.
    const parts = encodeFrameParts(response);
    const last = parts.length - 1;
    if (last > 0) s.cork();
    for (let i = 0; i < last; i++) s.write(parts[i]!);
    s.write(parts[last]!, () => done());
    if (last > 0) s.uncork();
  }

  /** Nothing moved for idleTimeoutMs: close unless a request is still being served and its peer reads. */
  private onTimeout(): void {
    const s = this.socket;
    const unread = s.writableLength > 0;
    if (!unread && this.inFlight > 0) return;
    this.log.info('closing an idle connection', { reason: unread ? 'replies not read' : this.decoder.pending > 0 ? 'half a frame' : 'idle', idleTimeoutMs: this.limits.idleTimeoutMs });
    s.destroy();
  }
}

/** How long a connection we have answered and ended may stay open for its peer to read the answer. */
const LINGER_MS = 1000;

/**
 * Send a last answer and close. What the peer still sends is read and dropped
 * (closing with unread data would reset the peer, which could lose the answer);
 * a peer that neither reads nor closes is cut off after LINGER_MS.
 */
export function endWithAnswer(socket: Socket, frame: Buffer): void {
  socket.resume();
  socket.end(frame);
  setTimeout(() => socket.destroy(), LINGER_MS).unref();
}

const EMPTY = Buffer.alloc(0);
/** Frames handled for one connection before the event loop serves others (handleFrames). */
const FRAMES_PER_TURN = 32;
/** The answer to a frame over the rate, made once (no error object, no stack, per frame of a flood). */
const OVER_RATE = new BrokerError('E_BUSY', 'message rate limit reached; slow down').toJSON();
const ID_AT_START = /^\s*\{\s*(?:"(?:v|op)"\s*:\s*(?:\d+|"[^"\\]{0,64}")\s*,\s*)*"id"\s*:\s*(\d{1,16}|"[^"\\]{0,64}")/;

/** The id of a request without parsing it: when it is among the envelope's first fields, as clients write it. */
function peekId(body: Buffer): RequestId {
  const m = ID_AT_START.exec(body.subarray(0, 256).toString('latin1'));
  if (!m) return null;
  return m[1]!.startsWith('"') ? m[1]!.slice(1, -1) : Number(m[1]);
}
const noop = (): void => undefined;
