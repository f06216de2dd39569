import { defaultConfig } from '../../src/common/defaults.js';
import { loadLibc, type Libc } from '../../src/ns/libc.js';
import { NullLoggerFactory } from '../../src/logging/winston-logger-factory.js';
import { NodeProcessSpawner } from '../../src/platform/node-platform.js';
import { NativeSpawner } from '../../src/upcall/native-spawner.js';
import { ZygoteRunner } from '../../src/upcall/zygote-runner.js';
import { NodeProcessSpawner as Processes, SystemClock } from '../../src/platform/node-platform.js';
import 'reflect-metadata';

let libc: Libc | null = null;

/** The real libc over koffi, loaded once per test process. */
export function realLibc(): Libc {
  libc ??= loadLibc();
  return libc;
}

/** The real C spawner (build/Release/upcall-spawner). */
export function realSpawner(): NativeSpawner {
  return new NativeSpawner(new NodeProcessSpawner(), defaultConfig(), new NullLoggerFactory());
}

/** A real zygote runner, remembered in `into` so the suite can stop them all. */
export function zygoteRunner(into: ZygoteRunner[]): ZygoteRunner {
  const r = new ZygoteRunner(new Processes(), defaultConfig(), new NullLoggerFactory(), new SystemClock());
  into.push(r);
  return r;
}
