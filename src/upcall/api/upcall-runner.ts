import type { Readable, Writable } from 'node:stream';
import type { Pidfd } from '../../ns/pidfd.js';

/**
 * The upcall runner as the rest of the broker uses it (src/upcall/zygote-runner.ts
 * ZygoteRunner): run a program or builtin as a true child of a context's init.
 */
/** Whose context an upcall runs in: the init of a registration's P0, as the broker holds it. */
export interface UpcallTarget {
  initPid: number;
  /** Field 22 of /proc/<initPid>/stat: the zygote checks it, so a reused pid is refused. */
  initStartTime: number;
  pidnsIno: number;
  /** P0 is the broker's own pid namespace: run in the broker's namespaces and credentials. */
  host: boolean;
  /**
   * Init's pidfd, as the broker holds it: the zygote takes a dup of it
   * (pidfd_getfd) and never looks init up by number. initPid, initStartTime
   * and pidnsIno only find a cached context there.
   */
  init: Pidfd;
}

export interface UpcallRequest {
  target: UpcallTarget;
  mode: 'exec' | 'builtin';
  argv: readonly string[];
  builtin?: string;
  stdin?: Buffer;
  /**
   * open() only: the program's stdin and stdout are one socket of a socketpair
   * whose other end is the session's stdin/stdout, so what goes between them
   * does not pass through the runner (the DNS relay: a round trip without the
   * zygote in it). Its stderr and exit are accounted for as for any upcall.
   */
  socket?: boolean;
  /** The whole environment (default: PATH only). */
  env?: Record<string, string>;
  cwd?: string;
  timeoutMs: number;
  /** Bytes kept of stdout and of stderr each; the rest is read and dropped (`truncated`). */
  outputCap: number;
  /** Called with the upcall's host pid once it is a child of the container's init, before it runs. */
  onStarted?: (pid: number) => void;
}

export interface UpcallOutcome {
  pid: number;
  code: number | null;
  signal: string | null;
  stdout: Buffer;
  stderr: Buffer;
  truncated: boolean;
  timedOut: boolean;
  durationMs: number;
  /** Per part of the context: "ok", "degraded: ...", "none", "skipped: host". */
  fields: Record<string, string>;
}

/**
 * A running upcall whose stdin and stdout stream: what is written to `stdin`
 * reaches the program as it is written, what it prints comes out of `stdout`
 * as it prints it (the DNS relay speaks its protocol over them).
 */
export interface UpcallSession {
  /** end() closes the program's stdin. */
  readonly stdin: Writable;
  /** Ends when the program has exited; errors (BrokerError) when it could not be started or the runner failed. */
  readonly stdout: Readable;
  /** As run()'s result, with an empty stdout (it went to `stdout`). */
  readonly outcome: Promise<UpcallOutcome>;
  /** Kill the program (and its process group) now. */
  kill(): void;
  /** End stdin and wait for the exit; after graceMs, kill. Never rejects. */
  close(graceMs?: number): Promise<void>;
  /**
   * Idle (kept alive between upcalls, doing nothing: RelayPool): it then takes
   * no slot of the MAX_IN_FLIGHT active ones, only one of the zygote's capacity.
   */
  setIdle(idle: boolean): void;
}

export const UpcallRunner = Symbol('UpcallRunner');
export interface UpcallRunner {
  run(req: UpcallRequest): Promise<UpcallOutcome>;
  /** Start an upcall with streaming stdin/stdout: req.stdin (optional) is its first input; write the rest to the session. */
  open(req: UpcallRequest): UpcallSession;
  stop(): Promise<void>;
  /** How many times a zygote was started to replace one that died. */
  readonly restarts: number;
}
