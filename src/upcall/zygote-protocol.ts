import { z } from 'zod';
import { W } from '../common/wire-constants.js';

/**
 * The upcall zygote's pipe protocol (native-bindings/README.md): frames of a
 * 4-byte big-endian length, requests on its stdin, events on its stdout. A
 * frame body is UTF-8 JSON, or, for a stream request's stdin and stdout, a
 * binary data frame: a kind byte (UB_ZYGOTE_FRAME_STDIN or _STDOUT), the
 * request id (8 bytes, big-endian) and the raw bytes. The exit event carries
 * whole outputs in base64, so frames can be a few MiB: chunks are kept in a
 * list and joined once per frame, not per chunk.
 */
export const ZYGOTE_HEADER_BYTES = W.UB_FRAME_HEADER;
/** Two streams of 8 MiB in base64 plus the envelope, with room to spare. */
export const ZYGOTE_MAX_EVENT = 32 * 1024 * 1024;
/** Limits the zygote enforces (native-bindings/include/ub-wire.h); checked here first for clearer errors. */
export const ZYGOTE_MAX_TIMEOUT_MS = W.UB_ZYGOTE_MAX_TIMEOUT_MS;
export const ZYGOTE_MAX_OUTPUT_CAP = W.UB_ZYGOTE_MAX_OUTPUT_CAP;
export const ZYGOTE_MAX_ARGS = W.UB_ZYGOTE_MAX_ARGS;

export interface SpawnFrame {
  id: number;
  op: typeof W.UB_ZYGOTE_OP_SPAWN;
  /**
   * The broker's fd number of init's pidfd: the zygote takes it with
   * pidfd_getfd(2) as it reads the frame, and that pidfd is init from then on.
   * The broker keeps the fd open until the request's final event.
   */
  initPidfd: number;
  /** initPid, initStartTime and pidns find a cached context (the zygote checks initPid against the pidfd). */
  initPid: number;
  initStartTime: number;
  pidns: number;
  host: boolean;
  mode: 'exec' | 'builtin';
  argv: readonly string[];
  builtin?: string;
  /** stdout goes out in data frames as it comes; stdin (data frames) stays open until a "stdin" frame with eof. */
  stream?: boolean;
  /** false: no "started" event (the pid comes with "exit"); saves the broker a wakeup per upcall. */
  startedEvent?: boolean;
  env?: Record<string, string>;
  cwd?: string;
  stdinBase64?: string;
  timeoutMs: number;
  outputCap: number;
}

/** Command-line options of the zygote (native-bindings/README.md, "The context cache"). */
export interface ZygoteOptions {
  /** Keep each init's captured context in a template process and reuse it, checked, for later spawns. */
  contextCache: boolean;
  /** A template is retired this long after its capture... */
  contextTtlMs: number;
  /** ...or after this long without a request. */
  contextIdleMs: number;
  /** Templates alive at once (the least recently used goes first). */
  maxContexts: number;
}

export const DEFAULT_ZYGOTE_OPTIONS: ZygoteOptions = { contextCache: true, contextTtlMs: 10_000, contextIdleMs: 3_000, maxContexts: 256 };

export function zygoteArgs(o: ZygoteOptions): string[] {
  if (!o.contextCache) return ['--no-context-cache'];
  return ['--context-ttl-ms', String(o.contextTtlMs), '--context-idle-ms', String(o.contextIdleMs), '--max-contexts', String(o.maxContexts)];
}

const Id = z.number().int().nonnegative();

export const ZygoteEvent = z.discriminatedUnion('event', [
  z.object({ id: Id, event: z.literal(W.UB_ZYGOTE_EVENT_STARTED), pid: z.number().int(), ppid: z.number().int().optional(), startTime: z.string().optional() }),
  z.object({
    id: Id,
    event: z.literal(W.UB_ZYGOTE_EVENT_EXIT),
    pid: z.number().int().optional(),
    code: z.number().int().nullable(),
    signal: z.string().nullable(),
    stdoutBase64: z.string(),
    stderrBase64: z.string(),
    truncated: z.boolean(),
    timedOut: z.boolean(),
    fields: z.record(z.string(), z.string()),
  }),
  z.object({
    id: Id.nullable(),
    event: z.literal(W.UB_ZYGOTE_EVENT_ERROR),
    code: z.string(),
    native: z.string().optional(),
    step: z.string(),
    errno: z.number().int(),
    message: z.string(),
  }),
]);
export type ZygoteEvent = z.infer<typeof ZygoteEvent>;

export function encodeZygoteFrame(message: SpawnFrame): Buffer {
  const body = Buffer.from(JSON.stringify(message), 'utf8');
  const header = Buffer.alloc(ZYGOTE_HEADER_BYTES);
  header.writeUInt32BE(body.length, 0);
  return Buffer.concat([header, body]);
}

/** A binary data frame of kind (W.UB_ZYGOTE_FRAME_*) for request id, with its length header. */
export function encodeZygoteData(kind: number, id: number, data: Uint8Array): Buffer {
  const head = Buffer.alloc(ZYGOTE_HEADER_BYTES + W.UB_ZYGOTE_DATA_HEADER);
  head.writeUInt32BE(W.UB_ZYGOTE_DATA_HEADER + data.length, 0);
  head[ZYGOTE_HEADER_BYTES] = kind;
  head.writeBigUInt64BE(BigInt(id), ZYGOTE_HEADER_BYTES + 1);
  return Buffer.concat([head, data]);
}

/**
 * A control record: W.UB_ZYGOTE_FRAME_EOF (a stream request's stdin ends once
 * what is queued is written) or W.UB_ZYGOTE_FRAME_KILL (kill it now). The data
 * frame header alone.
 */
export function encodeZygoteControl(kind: typeof W.UB_ZYGOTE_FRAME_EOF | typeof W.UB_ZYGOTE_FRAME_KILL, id: number): Buffer {
  return encodeZygoteData(kind, id, Buffer.alloc(0));
}

/** A frame body that is a data frame of kind: its request id and bytes; else null (a JSON frame). */
export function decodeZygoteData(kind: number, body: Buffer): { id: number; data: Buffer } | null {
  if (body.length < W.UB_ZYGOTE_DATA_HEADER || body[0] !== kind) return null;
  return { id: Number(body.readBigUInt64BE(1)), data: body.subarray(W.UB_ZYGOTE_DATA_HEADER) };
}

/** Incremental reader of the zygote's event frames. Throws on an oversized frame (the stream is then lost). */
export class ZygoteFrameReader {
  private chunks: Buffer[] = [];
  private size = 0;

  push(chunk: Buffer): Buffer[] {
    this.chunks.push(chunk);
    this.size += chunk.length;
    const frames: Buffer[] = [];
    for (;;) {
      if (this.size < ZYGOTE_HEADER_BYTES) break;
      const head = this.peek(ZYGOTE_HEADER_BYTES);
      const len = head.readUInt32BE(0);
      if (len > ZYGOTE_MAX_EVENT) throw new Error(`zygote event frame of ${len} bytes is over the limit`);
      if (this.size < ZYGOTE_HEADER_BYTES + len) break;
      const all = this.take(ZYGOTE_HEADER_BYTES + len);
      frames.push(all.subarray(ZYGOTE_HEADER_BYTES));
    }
    return frames;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!.subarray(0, n);
  }

  private take(n: number): Buffer {
    const joined = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const rest = joined.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.size = rest.length;
    return joined.subarray(0, n);
  }
}
