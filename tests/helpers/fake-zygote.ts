/**
 * A stand-in for the C zygote (build/Release/upcall-zygote) for ZygoteRunner's
 * unit tests: it reads the runner's frames (4-byte big-endian length, then a
 * binary record, src/upcall/zygote-protocol.ts), records them, and
 * answers only what the test makes it answer.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { PassThrough, Writable } from 'node:stream';
import { defaultConfig } from '../../src/common/defaults.js';
import { NullLoggerFactory } from '../../src/logging/winston-logger-factory.js';
import type { Libc } from '../../src/ns/libc.js';
import type { Pidfd } from '../../src/ns/pidfd.js';
import { SystemClock } from '../../src/platform/node-platform.js';
import { type UpcallRequest, ZygoteRunner } from '../../src/upcall/zygote-runner.js';
import { W } from '../../src/common/wire-constants.js';
import { decodeZygoteData, encodeZygoteData, encodeZygoteError, encodeZygoteStarted } from '../../src/upcall/zygote-protocol.js';

export interface SentFrame {
  op: string;
  id: number;
  pidns?: number;
  initPidfd?: number;
  /** A socket request's stdioFd (flag socket), else undefined. */
  stdioFd?: number;
  eof?: boolean;
  /** The bytes of a binary stdin frame. */
  data?: Buffer;
}

/** Binary frames as the op they stand for: stdin bytes, the end of stdin (eof), kill. */
function parseFrame(body: Buffer): SentFrame {
  const data = decodeZygoteData(W.UB_ZYGOTE_FRAME_STDIN, body);
  if (data) return { op: 'stdin', id: data.id, data: Buffer.from(data.data) };
  const eof = decodeZygoteData(W.UB_ZYGOTE_FRAME_EOF, body);
  if (eof) return { op: 'stdin', id: eof.id, eof: true };
  const kill = decodeZygoteData(W.UB_ZYGOTE_FRAME_KILL, body);
  if (kill) return { op: 'kill', id: kill.id };
  // a spawn record: what the tests look at is in its fixed header
  assert.equal(body[0], W.UB_ZYGOTE_FRAME_SPAWN, 'a frame the zygote would refuse');
  const socket = (body[10]! & W.UB_ZYGOTE_SPAWN_SOCKET) !== 0;
  return {
    op: 'spawn', id: Number(body.readBigUInt64BE(1)), initPidfd: body.readUInt32BE(19), pidns: Number(body.readBigUInt64BE(35)),
    ...(socket ? { stdioFd: body.readUInt32BE(43) } : {}),
  };
}

export class FakeZygote extends EventEmitter {
  /** Every frame received, in order. */
  readonly frames: SentFrame[] = [];
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  readonly pid = 1;
  private buffered = Buffer.alloc(0);
  private dead = false;
  readonly stdin = new Writable({
    write: (chunk: Buffer, _enc, cb) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      while (this.buffered.length >= 4 && this.buffered.length >= 4 + this.buffered.readUInt32BE(0)) {
        this.frames.push(parseFrame(this.buffered.subarray(4, 4 + this.buffered.readUInt32BE(0))));
        this.buffered = this.buffered.subarray(4 + this.buffered.readUInt32BE(0));
      }
      cb();
    },
  });

  constructor() {
    super();
    this.stdin.once('finish', () => setImmediate(() => this.die())); // as the zygote exits at EOF
  }

  /** The spawn frames received, in order. */
  get sent(): Array<{ id: number; pidns: number }> {
    return this.frames.filter((f) => f.op === 'spawn').map((f) => ({ id: f.id, pidns: f.pidns! }));
  }

  /** An event as the zygote writes it: started and error as binary records, exit (or anything else) as JSON. */
  event(ev: Record<string, unknown>): void {
    if (ev['event'] === 'started') {
      this.stdout.write(encodeZygoteStarted(Number(ev['id']), Number(ev['pid']), Number(ev['ppid'] ?? 0), BigInt(String(ev['startTime'] ?? 0))));
      return;
    }
    if (ev['event'] === 'error') {
      this.stdout.write(encodeZygoteError(ev as unknown as Parameters<typeof encodeZygoteError>[0]));
      return;
    }
    const body = Buffer.from(JSON.stringify(ev));
    const head = Buffer.alloc(4);
    head.writeUInt32BE(body.length);
    this.stdout.write(Buffer.concat([head, body]));
  }

  /** Bytes on the stdout of stream request `id` (a binary data frame). */
  stdoutData(id: number, data: Buffer): void {
    this.stdout.write(encodeZygoteData(W.UB_ZYGOTE_FRAME_STDOUT, id, data));
  }

  /** Answer request `id` as finished (exit status 0, no output). */
  exit(id: number): void {
    this.event({ id, event: 'exit', code: 0, signal: null, stdoutBase64: '', stderrBase64: '', truncated: false, timedOut: false, fields: {} });
  }

  die(): void {
    if (this.dead) return;
    this.dead = true;
    this.emit('close', null, 'SIGKILL');
  }

  kill(): boolean {
    setImmediate(() => this.die());
    return true;
  }

  unref(): void {}
}

/** A runner whose zygotes are `zygotes` (one per start, the next one after each death). */
export function runnerWith(zygotes: FakeZygote | FakeZygote[], libc: Libc = {} as Libc): ZygoteRunner {
  const queue = Array.isArray(zygotes) ? [...zygotes] : [zygotes];
  const spawn = () => queue.shift() as unknown as ChildProcess;
  return new ZygoteRunner({ spawn }, defaultConfig(), new NullLoggerFactory(), new SystemClock(), libc);
}

/** Init's pidfd as the fake runner sees it: dup() gives a stand-in that only counts its close (no zygote takes it). */
export const fakeInit = {
  closed: false,
  dups: 0,
  open: 0,
  dup() {
    fakeInit.dups++;
    fakeInit.open++;
    let closed = false;
    return { fd: 1000 + fakeInit.dups, get closed() { return closed; }, close() { if (!closed) fakeInit.open--; closed = true; } };
  },
} as unknown as Pidfd & { dups: number; open: number };

/** A builtin upcall in the context whose pid namespace is `pidnsIno`. */
export const upcall = (pidnsIno: number, more: Partial<UpcallRequest> = {}): UpcallRequest => ({
  target: { initPid: 1, initStartTime: 1, pidnsIno, host: false, init: fakeInit },
  mode: 'builtin', builtin: 'echo-context', argv: ['x'], timeoutMs: 60_000, outputCap: 1024, ...more,
});

/** One turn of the event loop: frames written in a tick are flushed, events read. */
export const tick = (): Promise<unknown> => new Promise((r) => setImmediate(r));
