/**
 * Injection tokens. Each token shares its name with the interface it stands for
 * (theia's convention), so `@inject(Clock) clock: Clock` reads as one thing.
 * The interfaces for Node side effects live here too, so unit tests can bind fakes.
 */
import type { SpawnOptions, ChildProcess } from 'node:child_process';
import type { BrokerConfig as BrokerConfigShape } from './config-schema.js';

export const Clock = Symbol('Clock');
export interface Clock {
  now(): number; // ms since the epoch
  monotonic(): number; // ms, monotonic
}

/** Timers whose firing is a decision (an idle relay ends): a unit test fires them by moving a fake clock. */
export const Timers = Symbol('Timers');
export interface Timers {
  /**
   * Call `fn` once, `ms` from now; the result cancels it (idempotent). A timer does not keep the
   * process alive unless `keepAlive` (a deadline something is waiting on, e.g. an upcall's watchdog).
   */
  after(ms: number, fn: () => void, opts?: { keepAlive?: boolean }): () => void;
}

/** Randomness that spreads work in time (jitter), never for secrets: a unit test fixes it. */
export const Random = Symbol('Random');
export interface Random {
  /** A number in [0, 1). */
  next(): number;
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

/** Signals to and from processes: the broker's own (SIGHUP, SIGTERM) and kills of its children. */
export const Signals = Symbol('Signals');
export interface Signals {
  /** Run `handler` on every delivery of `signal` to this process; returns its removal. */
  on(signal: NodeJS.Signals, handler: () => void): () => void;
  /** Send `signal` to a process (a negative pid: to its process group). Throws as process.kill does (ESRCH). */
  kill(pid: number, signal: NodeJS.Signals): void;
}

/** Reads of /proc by path below it (e.g. "self/ns/pid", "1234/status"): what a process is, as the kernel says now. */
export const ProcFs = Symbol('ProcFs');
export interface ProcFs {
  /** The text of /proc/<path>; throws as readFileSync does (ENOENT once the process is gone). */
  readText(path: string): string;
}

/** The effective configuration; its type is inferred from the one zod schema (src/common/config-schema.ts). */
export const BrokerConfig = Symbol('BrokerConfig');
export type BrokerConfig = BrokerConfigShape;
export type { RequestKeyConfig, RequestKeyRule } from './config-schema.js';

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
