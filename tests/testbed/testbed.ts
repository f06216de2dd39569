/**
 * Testbed: creates containers and guarantees they are torn down.
 *
 * Three layers of cleanup, from polite to blunt:
 * 1. dispose(), registered by useTestbed() as an after()/t.after() hook, so
 *    it runs when a test fails too; it verifies that nothing is left.
 * 2. A process 'exit' handler that SIGKILLs every live container's pid 1
 *    and removes its directory, for runs that end without hooks running.
 * 3. The kernel: pid 1 exits on EOF of its stdin pipe, which closes when
 *    the test process dies however it dies, and the pid namespace goes
 *    with it. Only the temp directory (and an unusual init's empty cgroups)
 *    can outlive a SIGKILLed runner; the next Testbed in any process sweeps
 *    such leftovers.
 */
import { after as suiteAfter } from 'node:test';
import { sweepStaleCgroups } from './cgroups.js';
import { isStale, sweepStaleDirs } from './container-dir.js';
import { TestContainer } from './container.js';
import type { ContainerSpec } from './container.js';

const live = new Set<TestContainer>();
let exitHookInstalled = false;

/** Once per process: the exit hook, and removal of what SIGKILLed runs left. */
async function firstUse(): Promise<void> {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const c of live) c.emergencyStopSync();
  });
  await sweepStaleDirs();
  await sweepStaleCgroups(isStale);
}

export class Testbed {
  private readonly containers: TestContainer[] = [];
  private disposing: Promise<void> | undefined;
  private counter = 0;

  async create(spec: ContainerSpec = {}): Promise<TestContainer> {
    if (this.disposing) throw new Error('testbed: create() after dispose()');
    await firstUse();
    const name = spec.name ?? `c${++this.counter}`;
    if (this.containers.some((c) => c.name === name)) throw new Error(`testbed: duplicate container name "${name}"`);
    const container = await TestContainer.create(spec, name);
    live.add(container);
    if (this.disposing) {
      // dispose() ran while we were starting: it cannot have seen this one.
      await container.stop().finally(() => live.delete(container));
      throw new Error('testbed: disposed while creating a container');
    }
    this.containers.push(container);
    return container;
  }

  /** Stops every container created here (in parallel); idempotent. */
  dispose(): Promise<void> {
    this.disposing ??= this.stopAll();
    return this.disposing;
  }

  private async stopAll(): Promise<void> {
    const results = await Promise.allSettled(
      this.containers.map(async (c) => {
        try {
          await c.stop();
        } finally {
          live.delete(c);
        }
      }),
    );
    const errors = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    if (errors.length > 0) throw new AggregateError(errors, `testbed: ${errors.length} container(s) failed teardown`);
  }
}

/** Anything with an after-hook registrar: node:test's TestContext, or a suite. */
export interface AfterHookHost {
  after(fn: () => Promise<void>): unknown;
}

/**
 * A Testbed disposed after the given test (`useTestbed(t)`), or after the
 * current suite/file when called at describe()/module level (`useTestbed()`).
 * Either way the hook runs whether or not the tests passed.
 */
export function useTestbed(ctx?: AfterHookHost): Testbed {
  const bed = new Testbed();
  const cleanup = (): Promise<void> => bed.dispose();
  if (ctx) ctx.after(cleanup);
  else suiteAfter(cleanup);
  return bed;
}
