import { spawn } from 'node:child_process';
import 'reflect-metadata';
import { Clock, LoggerFactory, ProcessSpawner } from '../src/common/tokens.js';
import { defaultConfig } from '../src/common/defaults.js';
import { createContainer } from '../src/container.js';
import { NullLoggerFactory } from '../src/logging/winston-logger-factory.js';
import { Libc } from '../src/ns/libc.js';
import { Pidfd } from '../src/ns/pidfd.js';
import { startTimeOf } from '../src/ns/proc-info.js';
import { Spawner } from '../src/upcall/native-spawner.js';
import { ZygoteRunner, type UpcallRequest, type UpcallTarget } from '../src/upcall/zygote-runner.js';
import { compare, table, type Stats } from './harness.js';

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: 'ignore' });
    c.once('error', reject);
    c.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited ${code}`))));
  });
}

export const NSENTER = 'nsenter -t <init> -a /bin/true';
/** The variant the spawn target is about: a builtin (no exec) with the context cache. */
export const BUILTIN_CACHED = 'zygote builtin netrelay, context cache';

/**
 * spawn: start a process as a child of a container's init and wait for it,
 * all started from this (broker-like) Node process: nsenter (what users have),
 * the one-shot spawner (exec of a helper per upcall: the simple first version),
 * the zygote capturing the context for every spawn (the version before the
 * context cache), and the zygote with its context cache, in exec mode
 * (/bin/true inside the container) and builtin mode (no exec: netrelay, the
 * DNS builtin, with empty stdin, so it starts and exits at once; and
 * echo-context, which prints 14 lines about itself).
 */
export async function spawnBench(c: { initPid: number }, opts: { warmup: number; iterations: number }): Promise<{ rows: Stats[]; text: string }> {
  const di = createContainer(defaultConfig(), new NullLoggerFactory());
  const libc = di.get<Libc>(Libc);
  const spawner = di.get<Spawner>(Spawner);
  const make = () => new ZygoteRunner(di.get(ProcessSpawner), defaultConfig(), di.get(LoggerFactory), di.get(Clock));
  const cold = make();
  cold.configure({ contextCache: false });
  const warm = make();
  using init = Pidfd.open(libc, c.initPid);
  using pidns = init.namespace('pid');
  const target: UpcallTarget = { initPid: c.initPid, initStartTime: startTimeOf(init), pidnsIno: pidns.identity().ino, host: false, init };
  const base = { target, timeoutMs: 10_000, outputCap: 4096 };
  const exec: UpcallRequest = { ...base, mode: 'exec', argv: ['/bin/true'] };
  const relay: UpcallRequest = { ...base, mode: 'builtin', builtin: 'netrelay', argv: [] };
  const echo: UpcallRequest = { ...base, mode: 'builtin', builtin: 'echo-context', argv: [] };
  const ok = async (p: Promise<{ code: number | null }>) => {
    const o = await p;
    if (o.code !== 0) throw new Error(`spawn bench: exit ${o.code}`);
  };
  try {
    const rows = await compare([
      { name: NSENTER, run: () => run('nsenter', ['-t', String(c.initPid), '-a', '/bin/true']) },
      { name: 'one-shot upcall-spawner exec /bin/true', run: () => ok(spawner.run({ target: init, argv: ['/bin/true'] })) },
      { name: 'zygote exec /bin/true, capture per spawn (before)', run: () => ok(cold.run(exec)) },
      { name: 'zygote exec /bin/true, context cache', run: () => ok(warm.run(exec)) },
      { name: 'zygote builtin netrelay, capture per spawn (before)', run: () => ok(cold.run(relay)) },
      { name: BUILTIN_CACHED, run: () => ok(warm.run(relay)) },
      { name: 'zygote builtin echo-context, context cache', run: () => ok(warm.run(echo)) },
    ], opts);
    return { rows, text: table(rows, NSENTER) };
  } finally {
    await Promise.all([cold.stop(), warm.stop()]);
  }
}
