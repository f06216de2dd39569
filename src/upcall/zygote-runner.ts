import type { ChildProcess } from 'node:child_process';
import { closeSync } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { inject, injectable, optional } from 'inversify';
import { BrokerError, isErrorCode } from '../common/errors.js';
import { W } from '../common/wire-constants.js';
import { BrokerConfig, Clock, LoggerFactory, ProcessSpawner, ProcFs, Signals, Timers, type Logger } from '../common/tokens.js';
import { NodeProcFs, NodeSignals, SystemTimers } from '../platform/node-platform.js';
import { K } from '../ns/kernel-constants.js';
import { Libc, loadLibc } from '../ns/libc.js';
import { Pidfd } from '../ns/pidfd.js';
import { UpcallRunner, type UpcallOutcome, type UpcallRequest, type UpcallSession, type UpcallTarget } from './api/upcall-runner.js';
import { compatEnv } from '../ns/kernel-compat.js';
import {
  DEFAULT_ZYGOTE_OPTIONS,
  decodeZygoteData,
  decodeZygoteEvent,
  encodeZygoteControl,
  encodeZygoteData,
  encodeZygoteFrame,
  zygoteArgs,
  ZYGOTE_MAX_ARGS,
  ZYGOTE_MAX_OUTPUT_CAP,
  ZYGOTE_MAX_TIMEOUT_MS,
  ZygoteFrameReader,
  type SpawnFrame,
  type ZygoteOptions,
} from './zygote-protocol.js';

export {
  UpcallRunner,
  type UpcallOutcome,
  type UpcallRequest,
  type UpcallSession,
  type UpcallTarget,
} from './api/upcall-runner.js';

/** How long past its own timeout a request may go unanswered before we give up on it. */
const ANSWER_GRACE_MS = 10_000;
const STOP_GRACE_MS = 5_000;
const SIGKILL = 9;
/** Active requests sent to the zygote at once (its slots free a moment after each event)... */
const MAX_IN_FLIGHT = 64;
/**
 * ...except that a context with fewer than this many active upcalls may start
 * one even when all MAX_IN_FLIGHT are taken (by other contexts' lookups that
 * never get an answer, say): no context can hold every slot.
 */
const RESERVED_PER_CONTEXT = 2;
/** ...and all of them, idle sessions included: the zygote accepts UB_ZYGOTE_MAX_INFLIGHT (512); 32 stay spare. */
const ZYGOTE_CAPACITY = W.UB_ZYGOTE_MAX_INFLIGHT - 32;
/** Waiting beyond that; more is refused with E_BUSY. */
const MAX_QUEUED = 4096;

/**
 * The fds a spawn frame names by number, which the zygote takes (pidfd_getfd)
 * when it reads the frame: our dup of init's pidfd, open until the request's
 * final event; a socket request's end of its socketpair (-1: none), until
 * "started" or the final event (see submit).
 */
interface Named {
  init: Pidfd;
  stdio: number;
}

function closeNamed(n: Named): void {
  n.init.close();
  closeStdio(n);
}

/** The zygote has its copy (after "started"), or it is done with the frame. */
function closeStdio(n: Named): void {
  if (n.stdio < 0) return;
  closeSync(n.stdio);
  n.stdio = -1;
}

interface Pending extends Named {
  req: UpcallRequest;
  startedAt: number;
  pid: number;
  /** The start time the zygote read for `pid` while the upcall waited (null: unknown, or not started yet). */
  startTime: string | null;
  /** A pidfd for `pid`, opened (pin) only when it is needed: who to kill if the zygote dies (killOrphan). */
  pidfd: Pidfd | null;
  /** Cancels the watchdog (Timers.after, kept alive: a pending request keeps Node running). */
  cancelWatchdog: () => void;
  stdout: Readable | null;
  /** An idle session (setIdle): not counted against MAX_IN_FLIGHT. */
  idle: boolean;
  resolve(outcome: UpcallOutcome): void;
  reject(err: BrokerError): void;
}

interface Queued extends Named {
  id: number;
  frame: Buffer;
  req: UpcallRequest;
  stdout: Readable | null;
  /** Control frames written before the spawn frame went out. */
  held: Buffer[];
  resolve: Pending['resolve'];
  reject: Pending['reject'];
}

/**
 * Runs upcalls through the long-lived C zygote (build/Release/upcall-zygote),
 * started lazily and again after it dies. The zygote and its pipes are
 * unref'd: only a pending request (its watchdog timer) keeps Node alive, and
 * when Node goes the zygote reads EOF and exits.
 */
@injectable()
export class ZygoteRunner implements UpcallRunner {
  private readonly log: Logger;
  private readonly path: string;
  private readonly pending = new Map<number, Pending>();
  /** The named fds of requests given up on (watchdog) before the zygote answered: closed at its late final event, or when it exits. */
  private readonly lingering = new Map<number, Named>();
  private readonly queue: Queued[] = [];
  /** Pending requests marked idle. */
  private idleCount = 0;
  /** Active (sent, not idle) requests per context (fairKey). */
  private readonly activeByContext = new Map<string, number>();
  private readonly libc: Libc;
  private readonly timers: Timers;
  private readonly signals: Signals;
  private readonly procFs: ProcFs;
  /** The zygote's stdin is corked until the end of the tick: frames written in one tick go in one write. */
  private corked = false;
  private options: ZygoteOptions = DEFAULT_ZYGOTE_OPTIONS;
  private proc: ChildProcess | null = null;
  private exited: Promise<void> | null = null;
  private nextId = 1;
  private died = false;
  private restartCount = 0;

  constructor(
    @inject(ProcessSpawner) private readonly processes: ProcessSpawner,
    @inject(BrokerConfig) config: BrokerConfig,
    @inject(LoggerFactory) loggers: LoggerFactory,
    @inject(Clock) private readonly clock: Clock,
    @inject(Libc) @optional() libc?: Libc,
    @inject(Timers) @optional() timers?: Timers,
    @inject(Signals) @optional() signals?: Signals,
    @inject(ProcFs) @optional() proc?: ProcFs,
  ) {
    this.log = loggers.get('upcall:ZygoteRunner');
    this.libc = libc ?? loadLibc();
    this.timers = timers ?? new SystemTimers();
    this.signals = signals ?? new NodeSignals();
    this.procFs = proc ?? new NodeProcFs();
    this.path = join(config.nativeDir, 'upcall-zygote');
  }

  get restarts(): number {
    return this.restartCount;
  }

  /** Zygote options (the context cache); they apply from the next zygote start (stop() to restart). */
  configure(options: Partial<ZygoteOptions>): void {
    this.options = { ...this.options, ...options };
  }

  /** Host pid of the running zygote, if any (diagnostics and tests). */
  get zygotePid(): number | null {
    return this.proc?.pid ?? null;
  }

  run(req: UpcallRequest): Promise<UpcallOutcome> {
    return this.submit(this.nextId++, req, null);
  }

  open(req: UpcallRequest): UpcallSession {
    if (req.socket) return this.openSocket(req);
    const id = this.nextId++;
    const stdout = new Readable({ read() {} });
    stdout.on('error', () => undefined); // the outcome carries the error too; a reader may listen or not
    const outcome = this.submit(id, req, stdout); // req.stdin, if any, goes with the spawn frame; stdin stays open
    outcome.then(() => stdout.push(null), (err: BrokerError) => stdout.destroy(err));
    outcome.catch(() => undefined); // handled here; callers get the same rejection from `outcome`
    const stdin = new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        this.sendFor(id, encodeZygoteData(W.UB_ZYGOTE_FRAME_STDIN, id, chunk));
        cb();
      },
      final: (cb) => {
        this.sendFor(id, encodeZygoteControl(W.UB_ZYGOTE_FRAME_EOF, id));
        cb();
      },
    });
    stdin.on('error', () => undefined);
    return this.session(id, stdin, stdout, outcome);
  }

  /** The session of request id over these streams: kill, close (end stdin, kill after graceMs), setIdle. */
  private session(id: number, stdin: Writable, stdout: Readable, outcome: Promise<UpcallOutcome>): UpcallSession {
    const kill = () => this.sendFor(id, encodeZygoteControl(W.UB_ZYGOTE_FRAME_KILL, id));
    const close = async (graceMs = 2000): Promise<void> => {
      if (!stdin.writableEnded) stdin.end();
      const cancel = this.timers.after(graceMs, kill);
      await outcome.catch(() => undefined);
      cancel();
    };
    const setIdle = (idle: boolean) => this.setIdle(id, idle);
    return { stdin, stdout, outcome, kill, close, setIdle };
  }

  /**
   * A session whose stdin and stdout are our end of a socketpair; the other
   * end, named in the spawn frame, is the program's fds 0 and 1. req.stdin is
   * written to the socket at once (the program reads it when it runs). stdout
   * ends at EOF on the socket or when the upcall's outcome comes, whichever is
   * first; the socket is destroyed then (a process of the container that took
   * a copy of the program's end cannot keep it open for us). Throws when no
   * socketpair can be made (EMFILE).
   */
  private openSocket(req: UpcallRequest): UpcallSession {
    const id = this.nextId++;
    const sv = Buffer.alloc(8);
    if (this.libc.unixStreamPair(sv) < 0) throw new BrokerError('E_SPAWN', `socketpair: errno ${this.libc.errno()}`);
    const [mine, theirs] = new Int32Array(sv.buffer, sv.byteOffset, 2) as unknown as [number, number];
    const socket = new Socket({ fd: mine, readable: true, writable: true });
    socket.unref();
    const stdout = new Readable({ read() {} });
    stdout.on('error', () => undefined);
    let ended = false;
    const end = (err?: BrokerError | Error) => {
      if (ended) return;
      ended = true;
      if (err) stdout.destroy(err);
      else stdout.push(null);
      socket.destroy();
    };
    socket.on('data', (chunk: Buffer) => { if (!ended) stdout.push(chunk); });
    socket.on('end', () => end());
    socket.on('error', (err) => end(err)); // EPIPE, ECONNRESET: the program has gone
    const { stdin: first, ...rest } = req;
    if (first && first.length > 0) socket.write(first);
    const outcome = this.submit(id, rest, null, theirs);
    outcome.then(() => end(), (err: BrokerError) => end(err)); // handles the rejection too
    return this.session(id, socket, stdout, outcome);
  }

  /**
   * The spawn frame names our own dup of init's pidfd by number: the zygote
   * takes it (pidfd_getfd) when it reads the frame, which may be later. The
   * dup stays open until this request's final event (or the zygote's end),
   * so the number cannot name another file meanwhile, even if the context
   * closes its pidfd.
   */
  private submit(id: number, req: UpcallRequest, stdout: Readable | null, stdio = -1): Promise<UpcallOutcome> {
    let frame: Buffer;
    let init: Pidfd | undefined;
    try {
      if (req.target.init.closed) throw new BrokerError('E_INIT_EXITED', `the init (pid ${req.target.initPid}) has exited`);
      init = req.target.init.dup();
      frame = encodeZygoteFrame(toFrame(id, req, stdout !== null, init.fd, stdio));
    } catch (err) {
      init?.close();
      if (stdio >= 0) closeSync(stdio);
      return Promise.reject(BrokerError.from(err));
    }
    if (this.queue.length >= MAX_QUEUED) {
      closeNamed({ init, stdio });
      return Promise.reject(new BrokerError('E_BUSY', 'too many upcalls waiting'));
    }
    return new Promise<UpcallOutcome>((resolve, reject) => {
      this.queue.push({ id, frame, req, init, stdio, stdout, held: [], resolve, reject });
      this.pump();
    });
  }

  /** A frame for request id: written now when its spawn frame is out, else after it; dropped once it has ended. */
  private sendFor(id: number, body: Buffer): void {
    if (this.pending.has(id)) {
      if (this.proc) this.write(this.proc, body);
      return;
    }
    this.queue.find((q) => q.id === id)?.held.push(body);
  }

  private setIdle(id: number, idle: boolean): void {
    const p = this.pending.get(id);
    if (!p || p.idle === idle) return;
    p.idle = idle;
    this.idleCount += idle ? 1 : -1;
    this.countActive(p.req, idle ? -1 : 1);
    if (idle) this.pump();
  }

  /** Send queued requests, fairly between contexts (nextFair); each one's clock starts when it is sent. */
  private pump(): void {
    while (this.queue.length > 0 && this.pending.size < ZYGOTE_CAPACITY) {
      const next = this.nextFair();
      if (next < 0) return;
      const { id, frame, req, init, stdio, stdout, held, resolve, reject } = this.queue.splice(next, 1)[0]!;
      const proc = this.ensureZygote();
      const cancelWatchdog = this.timers.after(req.timeoutMs + ANSWER_GRACE_MS, () => {
        this.killOrphan(this.pending.get(id));
        const p = this.pending.get(id);
        if (p) this.lingering.set(id, p); // the zygote may not have read the frame yet
        this.settle(id, new BrokerError('E_UPCALL_TIMEOUT', `the upcall zygote did not answer request ${id} in time`, { id }));
      }, { keepAlive: true });
      this.pending.set(id, { req, init, stdio, startedAt: this.clock.monotonic(), pid: 0, startTime: null, pidfd: null, cancelWatchdog, stdout, idle: false, resolve, reject });
      this.countActive(req, 1);
      this.write(proc, held.length > 0 ? Buffer.concat([frame, ...held]) : frame);
    }
  }

  /**
   * The queued request to send next, or -1: the oldest of the context with the
   * fewest active upcalls, so contexts take turns rather than one FIFO; once
   * MAX_IN_FLIGHT are active, only a context under RESERVED_PER_CONTEXT.
   */
  private nextFair(): number {
    const full = this.pending.size - this.idleCount >= MAX_IN_FLIGHT;
    let best = -1;
    let fewest = Infinity;
    for (let i = 0; i < this.queue.length && fewest > 0; i++) {
      const n = this.activeByContext.get(fairKey(this.queue[i]!.req)) ?? 0;
      if (n < fewest) {
        best = i;
        fewest = n;
      }
    }
    return full && fewest >= RESERVED_PER_CONTEXT ? -1 : best;
  }

  private countActive(req: UpcallRequest, delta: number): void {
    const key = fairKey(req);
    const n = (this.activeByContext.get(key) ?? 0) + delta;
    if (n > 0) this.activeByContext.set(key, n);
    else this.activeByContext.delete(key);
  }

  private write(proc: ChildProcess, frame: Buffer): void {
    const stdin = proc.stdin!;
    if (!this.corked) {
      this.corked = true;
      stdin.cork();
      process.nextTick(() => {
        this.corked = false;
        stdin.uncork();
      });
    }
    stdin.write(frame);
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    const exited = this.exited;
    this.proc = null;
    const stopped = new BrokerError('E_SPAWN', 'the upcall runner was stopped');
    for (const q of this.queue.splice(0)) {
      closeNamed(q);
      q.reject(stopped);
    }
    this.failAll(stopped);
    this.closeLingering();
    if (!proc || !exited) return;
    proc.stdin?.end(); // the zygote kills its in-flight upcalls and exits
    const cancel = this.timers.after(STOP_GRACE_MS, () => proc.kill('SIGKILL'));
    await exited;
    cancel();
  }

  private ensureZygote(): ChildProcess {
    if (this.proc) return this.proc;
    if (this.died) {
      this.died = false;
      this.restartCount++;
    }
    const proc = this.processes.spawn(this.path, zygoteArgs(this.options), { stdio: ['pipe', 'pipe', 'pipe'], env: compatEnv() });
    this.proc = proc;
    const reader = new ZygoteFrameReader();
    proc.stdout!.on('data', (chunk: Buffer) => {
      try {
        for (const body of reader.push(chunk)) this.onFrame(body);
      } catch (err) {
        this.log.error('unreadable output from the upcall zygote; killing it', { error: String(err) });
        proc.kill('SIGKILL');
      }
    });
    proc.stderr!.setEncoding('utf8').on('data', (text: string) => this.log.warn('upcall zygote', { stderr: text.trim() }));
    proc.stdin!.on('error', () => undefined); // EPIPE when it died: 'exit' reports
    this.exited = new Promise<void>((resolve) => {
      proc.once('error', (err) => {
        this.onGone(proc, `cannot run ${this.path}: ${err.message}`);
        resolve();
      });
      proc.once('close', (code, signal) => {
        this.onGone(proc, `the upcall zygote exited (code ${code}, signal ${signal})`);
        resolve();
      });
    });
    proc.unref();
    for (const s of [proc.stdin, proc.stdout, proc.stderr]) (s as unknown as Socket | null)?.unref?.();
    this.log.info('upcall zygote started', { pid: proc.pid, path: this.path, restarts: this.restartCount });
    return proc;
  }

  private onGone(proc: ChildProcess, why: string): void {
    if (this.proc !== proc) return; // stopped on purpose
    this.proc = null;
    this.died = true;
    this.log.warn(why, { pid: proc.pid, inFlight: this.pending.size });
    for (const p of this.pending.values()) this.killOrphan(p);
    this.failAll(new BrokerError('E_SPAWN', why));
    this.closeLingering();
  }

  private dropLingering(id: number): void {
    const n = this.lingering.get(id);
    if (n) closeNamed(n);
    this.lingering.delete(id);
  }

  private closeLingering(): void {
    for (const n of this.lingering.values()) closeNamed(n);
    this.lingering.clear();
  }

  private failAll(err: BrokerError): void {
    for (const id of [...this.pending.keys()]) this.settle(id, err);
  }

  private settle(id: number, result: UpcallOutcome | BrokerError): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (p.idle) this.idleCount--;
    else this.countActive(p.req, -1);
    p.pidfd?.close();
    if (!this.lingering.has(id)) closeNamed(p);
    p.cancelWatchdog();
    if (result instanceof BrokerError) p.reject(result);
    else p.resolve(result);
    queueMicrotask(() => this.pump());
  }

  /**
   * A pidfd for a started upcall, if `pid` still names it: opened first, then
   * its start time compared with the one the zygote read while the upcall
   * waited for its go (so the pidfd cannot name a process that reused the pid:
   * pid and start time together name one process for good). Opened only when
   * the upcall is to be killed (killOrphan), not for every upcall: the
   * comparison makes a late pin as safe as an early one. Without a start time
   * (the zygote found the upcall gone already) nothing is pinned.
   */
  private pin(pid: number, startTime: string | null): Pidfd | null {
    if (pid <= 0 || startTime === null) return null;
    let pidfd: Pidfd;
    try {
      pidfd = Pidfd.open(this.libc, pid);
    } catch {
      return null; // gone already: nothing to kill later
    }
    if (this.procStartTime(pid) !== startTime) {
      pidfd.close();
      return null;
    }
    return pidfd;
  }

  /** Field 22 of /proc/<pid>/stat (start time, clock ticks since boot), as text; null once it is gone. */
  private procStartTime(pid: number): string | null {
    try {
      const stat = this.procFs.readText(`${pid}/stat`);
      return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
    } catch {
      return null;
    }
  }

  /**
   * An upcall whose zygote died (or stopped answering) is nobody's: it is a
   * child of the container's init, and only the zygote would have killed it at
   * its timeout. Kill it and the process group it leads (setsid) through its
   * pidfd: pidfd_send_signal(PIDFD_SIGNAL_PROCESS_GROUP, Linux 6.9) never
   * reaches a process that reused the pid. On older kernels the group is killed
   * by number only while the leader is alive (its pid, the group's id, cannot
   * be reused before it is reaped), and the leader through its pidfd.
   * (tests/integration/reliability-faults.test.ts, "the upcall zygote dies")
   */
  private killOrphan(p: Pending | undefined): void {
    if (p && !p.pidfd) p.pidfd = this.pin(p.pid, p.startTime); // closed by settle()
    const pidfd = p?.pidfd;
    if (!pidfd || pidfd.closed) return;
    if (this.libc.pidfdSendSignal(pidfd.fd, SIGKILL, K.UB_PIDFD_SIGNAL_PROCESS_GROUP) === 0) return;
    if (pidfd.isAlive()) {
      try {
        this.signals.kill(-pidfd.pid, 'SIGKILL');
      } catch {
        // not a group leader, or the group is gone
      }
    }
    this.libc.pidfdSendSignal(pidfd.fd, SIGKILL, 0);
  }

  private onFrame(body: Buffer): void {
    const data = decodeZygoteData(W.UB_ZYGOTE_FRAME_STDOUT, body);
    if (data) {
      this.pending.get(data.id)?.stdout?.push(data.data);
      return;
    }
    const ev = decodeZygoteEvent(body); // throws for a binary record that does not add up: the zygote is killed
    if (!ev) {
      this.log.error('malformed event from the upcall zygote', { event: body.toString('utf8').slice(0, 200) });
      return;
    }
    if (ev.id === null) {
      this.log.error('the upcall zygote refused a request it could not read', { message: ev.event === 'error' ? ev.message : '' });
      return;
    }
    const p = this.pending.get(ev.id);
    if (!p) {
      if (ev.event !== 'started') this.dropLingering(ev.id); // its final event: the zygote is done with the frame
      return;
    }
    if (ev.event === 'started') {
      closeStdio(p); // the zygote took its copy as it read the frame
      p.pid = ev.pid;
      p.startTime = ev.startTime ?? null;
      p.req.onStarted?.(ev.pid);
    } else if (ev.event === 'error') {
      const code = isErrorCode(ev.code) ? ev.code : 'E_SPAWN';
      this.settle(ev.id, new BrokerError(code, ev.message, { step: ev.step, errno: ev.errno, nativeCode: ev.native }));
    } else {
      this.settle(ev.id, {
        pid: p.pid || (ev.pid ?? 0),
        code: ev.code,
        signal: ev.signal,
        stdout: Buffer.from(ev.stdoutBase64, 'base64'),
        stderr: Buffer.from(ev.stderrBase64, 'base64'),
        truncated: ev.truncated,
        timedOut: ev.timedOut,
        durationMs: this.clock.monotonic() - p.startedAt,
        fields: ev.fields,
      });
    }
  }
}

function toFrame(id: number, req: UpcallRequest, stream: boolean, initPidfd: number, stdioFd: number): SpawnFrame {
  const bad = (why: string): never => {
    throw new BrokerError('E_BAD_REQUEST', why);
  };
  if (!Number.isInteger(req.timeoutMs) || req.timeoutMs < 1 || req.timeoutMs > ZYGOTE_MAX_TIMEOUT_MS) bad('timeoutMs out of range');
  if (!Number.isInteger(req.outputCap) || req.outputCap < 0 || req.outputCap > ZYGOTE_MAX_OUTPUT_CAP) bad('outputCap out of range');
  if (req.mode === 'exec' && req.argv.length === 0) bad('empty command');
  if (req.mode === 'builtin' && !req.builtin) bad('builtin mode needs a builtin name');
  if (req.argv.length > ZYGOTE_MAX_ARGS) bad('too many arguments');
  const t = req.target;
  return {
    id,
    initPidfd,
    initPid: t.initPid,
    initStartTime: t.initStartTime,
    pidns: t.pidnsIno,
    host: t.host,
    mode: req.mode,
    argv: req.argv,
    ...(req.builtin !== undefined ? { builtin: req.builtin } : {}),
    ...(stream ? { stream: true } : {}),
    ...(stdioFd >= 0 ? { stdioFd } : {}),
    // Always ask for "started": its pid is what killOrphan() needs if the zygote dies mid-upcall.
    ...(req.env !== undefined ? { env: req.env } : {}),
    ...(req.cwd !== undefined ? { cwd: req.cwd } : {}),
    ...(req.stdin !== undefined && req.stdin.length > 0 ? { stdin: req.stdin } : {}),
    timeoutMs: req.timeoutMs,
    outputCap: req.outputCap,
  };
}

function fairKey(req: UpcallRequest): string {
  return req.target.host ? 'host' : String(req.target.pidnsIno);
}
