import { z } from 'zod';
import { encodeLengthFrame, LengthFrameDecoder } from '../common/frame.js';
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
  return encodeLengthFrame(Buffer.from(JSON.stringify(message), 'utf8'));
}

/** A binary data frame of kind (W.UB_ZYGOTE_FRAME_*) for request id, with its length header. */
export function encodeZygoteData(kind: number, id: number, data: Uint8Array): Buffer {
  const head = Buffer.alloc(W.UB_ZYGOTE_DATA_HEADER);
  head[0] = kind;
  head.writeBigUInt64BE(BigInt(id), 1);
  return encodeLengthFrame(head, data);
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

/** Incremental reader of the zygote's event frames (the one length framer). Throws FrameLengthError on an oversized frame (the stream is then lost). */
export class ZygoteFrameReader extends LengthFrameDecoder {
  constructor() {
    super({ maxFrame: ZYGOTE_MAX_EVENT, what: 'zygote event frame' });
  }
}
