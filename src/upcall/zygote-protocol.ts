import { z } from 'zod';
import { BrokerError } from '../common/errors.js';
import { encodeLengthFrame, FRAME_LENGTH_MAX, LengthFrameDecoder } from '../common/frame.js';
import { W } from '../common/wire-constants.js';

/**
 * The upcall zygote's pipe protocol (native-bindings/README.md): frames of a
 * 4-byte big-endian length, requests on its stdin, events on its stdout. A
 * frame body is a binary record: a kind byte (W.UB_ZYGOTE_FRAME_*), the
 * request id (8 bytes, big-endian) and what that kind carries (raw stdin and
 * stdout bytes; eof and kill nothing; started and error fixed and
 * length-prefixed fields, decodeZygoteEvent); or UTF-8 JSON: the spawn
 * request and the exit event, whose first byte is never a kind. The exit event carries
 * whole outputs in base64, so frames can be a few MiB: chunks are kept in a
 * list and joined once per frame, not per chunk.
 */
/** Two streams of 8 MiB in base64 plus the envelope, with room to spare. */
export const ZYGOTE_MAX_EVENT = 32 * 1024 * 1024;
/** Limits the zygote enforces (native-bindings/include/ub-wire.h); checked here first for clearer errors. */
export const ZYGOTE_MAX_TIMEOUT_MS = W.UB_ZYGOTE_MAX_TIMEOUT_MS;
export const ZYGOTE_MAX_OUTPUT_CAP = W.UB_ZYGOTE_MAX_OUTPUT_CAP;
export const ZYGOTE_MAX_ARGS = W.UB_ZYGOTE_MAX_ARGS;

/** A spawn request, sent as a binary record (encodeZygoteFrame, native-bindings/include/ub-wire.h). */
export interface SpawnFrame {
  id: number;
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
  /**
   * The broker's fd number of one end of a socketpair: the program's stdin and
   * stdout instead of pipes (no stdin data in the record, no stream frames).
   * Taken by the zygote as initPidfd is (pidfd_getfd as it reads the frame);
   * the broker keeps it open until "started" or the final event.
   */
  stdioFd?: number;
  /** false: no "started" event (the pid comes with "exit"); saves the broker a wakeup per upcall. */
  startedEvent?: boolean;
  env?: Record<string, string>;
  cwd?: string;
  stdin?: Uint8Array;
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

const MODES = { exec: W.UB_ZYGOTE_MODE_EXEC, 'echo-context': W.UB_ZYGOTE_MODE_ECHO_CONTEXT, netrelay: W.UB_ZYGOTE_MODE_NETRELAY } as const;

const EMPTY = new Uint8Array(0);
const TWO_32 = 2 ** 32;

/** n (an integer in 0..2^53) as 8 bytes big-endian at off, without a BigInt. */
function putU64(b: Buffer, n: number, off: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${n} is not an integer in 0..2^53`);
  b.writeUInt32BE(Math.floor(n / TWO_32), off);
  b.writeUInt32BE(n % TWO_32, off + 4);
}

/** A 2-byte count, then each string as a 4-byte length and its UTF-8 bytes, at off; the offset after. */
function putStrings(b: Buffer, list: readonly string[], lengths: readonly number[], off: number): number {
  b.writeUInt16BE(list.length, off);
  off += 2;
  for (let i = 0; i < list.length; i++) {
    b.writeUInt32BE(lengths[i]!, off);
    off += 4 + b.write(list[i]!, off + 4, 'utf8');
  }
  return off;
}

const utf8Lengths = (list: readonly string[]) => list.map((x) => Buffer.byteLength(x, 'utf8'));
const sum = (ns: readonly number[]) => ns.reduce((a, n) => a + n, 0);

/**
 * The spawn request as a binary record with its length header: fixed fields,
 * then argv, env ("NAME=value"), cwd (empty: none) and stdin, each
 * length-prefixed. The zygote checks every length against the frame; the
 * caller has checked the ranges (toFrame in zygote-runner.ts). Written into
 * one buffer, sized first: one per upcall, no parts joined.
 */
export function encodeZygoteFrame(m: SpawnFrame): Buffer {
  const mode = m.mode === 'exec' ? MODES.exec : m.builtin === 'netrelay' ? MODES.netrelay : m.builtin === 'echo-context' ? MODES['echo-context'] : -1;
  if (mode < 0) throw new BrokerError('E_BAD_REQUEST', `unknown builtin ${m.builtin ?? '(none)'} (known: echo-context, netrelay)`);
  const env = m.env !== undefined ? Object.entries(m.env).map(([k, v]) => `${k}=${v}`) : null;
  const argvLengths = utf8Lengths(m.argv);
  const envLengths = env ? utf8Lengths(env) : [];
  const cwd = m.cwd ?? '';
  const cwdLength = Buffer.byteLength(cwd, 'utf8');
  const stdin = m.stdin ?? EMPTY;
  const length = W.UB_ZYGOTE_SPAWN_HEADER + 2 + 4 * m.argv.length + sum(argvLengths) + (env ? 2 + 4 * env.length + sum(envLengths) : 0) +
    4 + cwdLength + 4 + stdin.length;
  if (length > FRAME_LENGTH_MAX) throw new RangeError(`a frame body of ${length} bytes does not fit a 4-byte length`);
  const b = Buffer.allocUnsafe(W.UB_FRAME_HEADER + length);
  b.writeUInt32BE(length, 0);
  const h = W.UB_FRAME_HEADER;
  b[h] = W.UB_ZYGOTE_FRAME_SPAWN;
  putU64(b, m.id, h + 1);
  b[h + 9] = mode;
  b[h + 10] = (m.host ? W.UB_ZYGOTE_SPAWN_HOST : 0) | (m.stream ? W.UB_ZYGOTE_SPAWN_STREAM : 0) |
    (m.startedEvent === false ? W.UB_ZYGOTE_SPAWN_NO_STARTED : 0) | (env ? W.UB_ZYGOTE_SPAWN_ENV : 0) |
    (m.stdioFd !== undefined ? W.UB_ZYGOTE_SPAWN_SOCKET : 0);
  b.writeUInt32BE(m.timeoutMs, h + 11);
  b.writeUInt32BE(m.outputCap, h + 15);
  b.writeUInt32BE(m.initPidfd, h + 19);
  b.writeUInt32BE(m.initPid, h + 23);
  putU64(b, m.initStartTime, h + 27);
  putU64(b, m.pidns, h + 35);
  b.writeUInt32BE(m.stdioFd ?? 0, h + 43);
  let off = putStrings(b, m.argv, argvLengths, h + W.UB_ZYGOTE_SPAWN_HEADER);
  if (env) off = putStrings(b, env, envLengths, off);
  b.writeUInt32BE(cwdLength, off);
  off += 4 + b.write(cwd, off + 4, 'utf8');
  b.writeUInt32BE(stdin.length, off);
  b.set(stdin, off + 4);
  return b;
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

/** A record from the zygote that does not add up: the zygote is then killed, as for any unreadable output. */
export class ZygoteRecordError extends BrokerError {
  constructor(what: string) {
    super('E_PROTOCOL', `malformed record from the upcall zygote: ${what}`);
  }
}

const PID_MAX = 0x7fff_ffff;

/**
 * An event frame (not a stdout data frame) as a ZygoteEvent: a started or
 * error record (binary, native-bindings/include/ub-wire.h) or the exit event
 * (JSON). Throws ZygoteRecordError for a binary record whose lengths or
 * fields are wrong, SyntaxError for a frame that is no JSON either; null for
 * JSON that does not match the schema.
 */
export function decodeZygoteEvent(body: Buffer): ZygoteEvent | null {
  if (body[0] === W.UB_ZYGOTE_FRAME_STARTED) return decodeStarted(body);
  if (body[0] === W.UB_ZYGOTE_FRAME_ERROR) return decodeError(body);
  const parsed = ZygoteEvent.safeParse(JSON.parse(body.toString('utf8')));
  return parsed.success ? parsed.data : null;
}

function recordId(body: Buffer): number {
  const id = body.readBigUInt64BE(1);
  if (id > BigInt(Number.MAX_SAFE_INTEGER)) throw new ZygoteRecordError(`request id ${id} is over 2^53`);
  return Number(id);
}

function decodeStarted(body: Buffer): ZygoteEvent {
  if (body.length !== W.UB_ZYGOTE_STARTED_LEN) throw new ZygoteRecordError(`started record of ${body.length} bytes, not ${W.UB_ZYGOTE_STARTED_LEN}`);
  const id = recordId(body);
  const pid = body.readUInt32BE(9);
  const ppid = body.readUInt32BE(13);
  if (pid < 1 || pid > PID_MAX || ppid > PID_MAX) throw new ZygoteRecordError(`started record with pid ${pid}, ppid ${ppid}`);
  const start = body.readBigUInt64BE(17);
  return { id, event: W.UB_ZYGOTE_EVENT_STARTED, pid, ppid, ...(start !== 0n ? { startTime: String(start) } : {}) };
}

function decodeError(body: Buffer): ZygoteEvent {
  if (body.length < W.UB_ZYGOTE_ERROR_HEADER) throw new ZygoteRecordError(`error record of ${body.length} bytes, shorter than its header`);
  const flags = body[9]!;
  if (flags !== 0 && flags !== W.UB_ZYGOTE_ERROR_NO_ID) throw new ZygoteRecordError(`error record with flags ${flags}`);
  const id = flags === W.UB_ZYGOTE_ERROR_NO_ID ? null : recordId(body);
  const errno = body.readInt32BE(10);
  const strings: string[] = [];
  let off = W.UB_ZYGOTE_ERROR_HEADER;
  for (let i = 0; i < 4; i++) {
    if (off + 2 > body.length) throw new ZygoteRecordError(`error record ends before string ${i + 1}`);
    const n = body.readUInt16BE(off);
    if (n > W.UB_ZYGOTE_ERROR_MAX_STRING || off + 2 + n > body.length) throw new ZygoteRecordError(`error record string ${i + 1} of ${n} bytes runs past the record`);
    strings.push(body.toString('utf8', off + 2, off + 2 + n));
    off += 2 + n;
  }
  if (off !== body.length) throw new ZygoteRecordError(`${body.length - off} bytes after the error record`);
  const [code, native, step, message] = strings as [string, string, string, string];
  return { id, event: W.UB_ZYGOTE_EVENT_ERROR, code, native, step, errno, message };
}

/** A started record as the zygote writes it (for fakes and tests); startTime 0n: unknown. */
export function encodeZygoteStarted(id: number, pid: number, ppid: number, startTime: bigint): Buffer {
  const body = Buffer.alloc(W.UB_ZYGOTE_STARTED_LEN);
  body[0] = W.UB_ZYGOTE_FRAME_STARTED;
  body.writeBigUInt64BE(BigInt(id), 1);
  body.writeUInt32BE(pid, 9);
  body.writeUInt32BE(ppid, 13);
  body.writeBigUInt64BE(startTime, 17);
  return encodeLengthFrame(body);
}

/** An error record as the zygote writes it (for fakes and tests); id null: the flag for "no id". */
export function encodeZygoteError(e: { id: number | null; code: string; native?: string; step: string; errno: number; message: string }): Buffer {
  const head = Buffer.alloc(W.UB_ZYGOTE_ERROR_HEADER);
  head[0] = W.UB_ZYGOTE_FRAME_ERROR;
  head.writeBigUInt64BE(BigInt(e.id ?? 0), 1);
  head[9] = e.id === null ? W.UB_ZYGOTE_ERROR_NO_ID : 0;
  head.writeInt32BE(e.errno, 10);
  const strings = [e.code, e.native ?? e.code, e.step, e.message].map((s) => {
    const b = Buffer.from(s, 'utf8');
    const n = Buffer.alloc(2);
    n.writeUInt16BE(b.length);
    return Buffer.concat([n, b]);
  });
  return encodeLengthFrame(head, ...strings);
}

/** Incremental reader of the zygote's event frames (the one length framer). Throws FrameLengthError on an oversized frame (the stream is then lost). */
export class ZygoteFrameReader extends LengthFrameDecoder {
  constructor() {
    super({ maxFrame: ZYGOTE_MAX_EVENT, what: 'zygote event frame' });
  }
}
