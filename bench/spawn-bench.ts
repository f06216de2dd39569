import { spawn } from 'node:child_process';
import 'reflect-metadata';
import { defaultConfig } from '../src/common/defaults.js';
import { createContainer } from '../src/container.js';
import { NullLoggerFactory } from '../src/logging/winston-logger-factory.js';
import { Libc } from '../src/ns/libc.js';
import { Pidfd } from '../src/ns/pidfd.js';
import { startTimeOf } from '../src/ns/proc-info.js';
import { Spawner } from '../src/upcall/native-spawner.js';
import { UpcallRunner, type UpcallTarget } from '../src/upcall/zygote-runner.js';
import type { TestContainer } from '../tests/testbed/index.js';
import { compare, table, type Stats } from './harness.js';

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: 'ignore' });
    c.once('error', reject);
    c.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited ${code}`))));
  });
}

/**
 * spawn: start a process as a child of a container's init and wait for it,
 * all started from this (broker-like) Node process: nsenter (what users have),
 * the one-shot spawner (exec of a helper per upcall: the simple first version),
 * the zygote in exec mode (/bin/true inside the container) and in builtin mode.
 */
export async function spawnBench(c: TestContainer, opts: { warmup: number; iterations: number }): Promise<{ rows: Stats[]; text: string }> {
  const di = createContainer(defaultConfig(), new NullLoggerFactory());
  const libc = di.get<Libc>(Libc);
  const runner = di.get<UpcallRunner>(UpcallRunner);
  const spawner = di.get<Spawner>(Spawner);
  using init = Pidfd.open(libc, c.initPid);
  using pidns = init.namespace('pid');
  const target: UpcallTarget = { initPid: c.initPid, initStartTime: startTimeOf(init), pidnsIno: pidns.identity().ino, host: false };
  const base = { target, timeoutMs: 10_000, outputCap: 4096 };
  try {
    const rows = await compare([
      { name: 'nsenter -t <init> -a /bin/true', run: () => run('nsenter', ['-t', String(c.initPid), '-a', '/bin/true']) },
      { name: 'one-shot upcall-spawner exec /bin/true', run: async () => { await spawner.run({ target: init, argv: ['/bin/true'] }); } },
      { name: 'zygote exec /bin/true', run: async () => { await runner.run({ ...base, mode: 'exec', argv: ['/bin/true'] }); } },
      { name: 'zygote builtin (no exec)', run: async () => { await runner.run({ ...base, mode: 'builtin', builtin: 'echo-context', argv: [] }); } },
    ], opts);
    return { rows, text: table(rows, 'nsenter -t <init> -a /bin/true') };
  } finally {
    await runner.stop();
  }
}
