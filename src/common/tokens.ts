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
  writeFileAtomic(path: string, data: string | Buffer, mode?: number): Promise<void>;
  exists(path: string): Promise<boolean>;
  mkdir(path: string, mode?: number): Promise<void>;
  unlink(path: string): Promise<void>;
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
