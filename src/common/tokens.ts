/**
 * Injection tokens. Each token shares its name with the interface it stands for
 * (theia's convention), so `@inject(Clock) clock: Clock` reads as one thing.
 * The interfaces for Node side effects live here too, so unit tests can bind fakes.
 */
import type { SpawnOptions, ChildProcess } from 'node:child_process';

export const Clock = Symbol('Clock');
export interface Clock {
  now(): number; // ms since the epoch
  monotonic(): number; // ms, monotonic
}

export const FileSystem = Symbol('FileSystem');
export interface FileSystem {
  readFile(path: string): Promise<Buffer>;
  /** Temp file, fsync, rename, fsync of the directory; chunks of an iterable are written as they come. */
  writeFileAtomic(path: string, data: string | Buffer | AsyncIterable<string | Buffer>, mode?: number): Promise<void>;
  exists(path: string): Promise<boolean>;
  mkdir(path: string, mode?: number): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** Names in a directory; [] if it does not exist. */
  readdir(path: string): Promise<string[]>;
  /** Open a file for writes at given offsets; created with `mode` if missing (and then its directory fsynced). */
  openAppend(path: string, mode?: number): Promise<AppendFile>;
  /** Free space on the filesystem holding `path` (what this process may still write) and its block size. */
  statfs(path: string): Promise<{ availableBytes: number; blockSize: number }>;
}

/** An open file written at explicit offsets (src/broker/state-store.ts's journal). */
export interface AppendFile {
  /** Size when opened. */
  readonly size: number;
  /** Write all of `data` at `offset` (a short write is continued; an error may leave part of it written). */
  write(data: Buffer, offset: number): Promise<void>;
  datasync(): Promise<void>;
  truncate(length: number): Promise<void>;
  close(): Promise<void>;
}

export const ProcessSpawner = Symbol('ProcessSpawner');
export interface ProcessSpawner {
  spawn(command: string, args: readonly string[], options: SpawnOptions): ChildProcess;
}

export const BrokerConfig = Symbol('BrokerConfig');
export interface BrokerConfig {
  adminSocket: string;
  tenantSocket: string | null;
  stateDir: string;
  logLevel: string;
  logFormat: 'json' | 'console';
  /** Where the native executables live (build/Release by default). */
  nativeDir: string;
  /** Prometheus endpoint: "127.0.0.1:PORT" or an absolute UNIX socket path; null: off. */
  metricsListen: string | null;
  /** Overrides of the request limits (src/server/limits.ts DEFAULT_LIMITS). */
  limits?: Partial<import('../server/limits.js').Limits>;
  /** Kernel request-key upcalls through the upcall-request-key handler (docs/request-key.md). */
  requestKey: RequestKeyConfig;
  /** Overrides of how DNS relays are kept between upcalls (src/upcall/dns/relay-pool.ts DEFAULT_RELAY_POOL). */
  dns?: Partial<import('../upcall/dns/relay-pool.js').RelayPoolConfig>;
}

/**
 * How the `request-key` op answers the kernel's key construction requests.
 * dns_resolver keys are built in (DnsService); other key types need a rule.
 */
export interface RequestKeyConfig {
  /**
   * Requests whose walk ends in the broker's own pid namespace (host processes,
   * and containers sharing the host's user namespace): "decline" lets the
   * handler run its fallback (keyutils' own handler, unchanged host behaviour);
   * "serve" answers them in the broker's own namespaces, as keyutils would.
   */
  hostRequests: 'serve' | 'decline';
  /** Negative-key timeout when no rule matches or the program fails (the kernel's own default is 60). */
  negativeTimeoutSeconds: number;
  /** Timeout of keys rejected for a transient reason (upcall timed out, container init gone, spawn failed). */
  retryTimeoutSeconds: number;
  /**
   * Longest expiry (and negative timeout) of a key answered for a kernel thread
   * by the registrations: such a key may land in the host's cache.
   */
  kernelThreadMaxExpirySeconds: number;
  /** Rules for generic key types; for one key, the best match wins as in request-key.conf. */
  rules: RequestKeyRule[];
}

/** One request-key.conf-style line, run inside the requester's container. */
export interface RequestKeyRule {
  /** Key type, exactly (e.g. "user", "cifs.spnego"). dns_resolver is built in and cannot be ruled. */
  type: string;
  /** request-key pattern for the description: exact, or with one '*' (default "*"). */
  description: string;
  /** request-key pattern for the callout info (default "*"). */
  callout: string;
  /** Absolute path of the program, resolved inside the container's root. */
  program: string;
  /** Arguments after argv[0]; whole-argument macros %o %k %t %d %c %u %g %T %P %S, "%%" escapes a leading '%'. */
  args: string[];
  /** What the program reads on stdin: the callout info (request-key's "|prog" mode) or nothing. */
  stdin: 'callout' | 'none';
  /** Kill the program after this long (bounded further by the handler's own budget). */
  timeoutMs: number;
  /** Largest payload accepted from stdout; more rejects the key with EMSGSIZE. */
  maxPayloadBytes: number;
  /** Expiry set on the instantiated key; null: none. */
  expirySeconds: number | null;
}

export const LoggerFactory = Symbol('LoggerFactory');
export interface Logger {
  error(message: string, meta?: Record<string, unknown>): void;
  warn(message: string, meta?: Record<string, unknown>): void;
  info(message: string, meta?: Record<string, unknown>): void;
  debug(message: string, meta?: Record<string, unknown>): void;
  /** One line per security decision: registration accepted/refused, upcall run/failed. */
  audit(event: string, meta: Record<string, unknown>): void;
}
export interface LoggerFactory {
  /** A named child logger, `area:ClassName` (e.g. `broker:Registry`). */
  get(name: string): Logger;
}
