/**
 * Host side of init's "run" request: processes that are genuine children of
 * the container's pid 1 (ppid 1 inside, ppid = init's host pid outside),
 * which is what a containerised daemon forking a worker looks like.
 */
import { readFile } from 'node:fs/promises';
import { awaitExec, makeHandle } from './child-handles.js';
import type { ChildHandle, Tracker } from './child-handles.js';
import { runOutputPaths } from './init-protocol.js';
import type { LineChannel } from './line-channel.js';
import { STOP_THEN_EXEC } from './nsenter.js';
import type { ExecResult } from './nsenter.js';
import { CONTAINER_ENV } from './launch.js';
import { childrenOf, identify, nsPids, procStat, waitFor } from './procfs.js';
import { scaled } from './time-scale.js';

export interface InitRunOptions {
  readonly env?: Readonly<Record<string, string>>;
  /** Default "/" (inside init's root). */
  readonly cwd?: string;
  /** Start in init's own working directory instead, as a plain fork would. */
  readonly inheritCwd?: boolean;
}

const START_TIMEOUT_MS = scaled(30_000);

export class InitClient {
  private nextId = 1;

  constructor(
    private readonly channel: LineChannel,
    private readonly initPid: number,
    private readonly dir: string,
    private readonly track: Tracker,
  ) {}

  async run(argv: readonly string[], opts: InitRunOptions = {}): Promise<ChildHandle> {
    const id = this.nextId++;
    // Subscribe before sending, so a fast child cannot beat us to the events.
    const started = this.channel.waitForEvent(`start of init child ${id}`, START_TIMEOUT_MS, (e) => {
      if (e.ev === 'error' && e.id === id) throw new Error(`init could not run ${argv.join(' ')}: ${e.message}`);
      return e.ev === 'started' && e.id === id ? e.pid : undefined;
    });
    const exited = this.channel.waitForEvent(`exit of init child ${id}`, undefined, (e) =>
      e.ev === 'exit' && e.id === id ? e : undefined,
    );
    exited.catch(() => undefined);
    this.channel.send({
      op: 'run',
      id,
      argv: ['/bin/sh', '-c', STOP_THEN_EXEC, 'sh', ...argv],
      env: { ...CONTAINER_ENV, ...opts.env },
      ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
      ...(opts.inheritCwd ? { inheritCwd: true } : {}),
    });
    // Same trick as spawnStopped: the child stops before exec, so its pid cannot slip away.
    const hostPid = await this.findStoppedChild(await started);
    const identity = await identify(hostPid);
    if (!identity) throw new Error(`testbed: init child ${id} vanished while stopped`);
    const done = exited.then((e) => this.result(id, e.code, e.signal));
    this.track(done);
    const handle = await makeHandle(identity, done);
    process.kill(hostPid, 'SIGCONT');
    await awaitExec(identity);
    return handle;
  }

  /** Host pid of init's child whose innermost pid is `containerPid`, once it has stopped. */
  private findStoppedChild(containerPid: number): Promise<number> {
    return waitFor(
      `init child ${containerPid} to stop before exec`,
      async () => {
        for (const pid of await childrenOf(this.initPid)) {
          if ((await nsPids(pid))?.at(-1) === containerPid && (await procStat(pid))?.state === 'T') return pid;
        }
        return null;
      },
      START_TIMEOUT_MS,
    );
  }

  private async result(id: number, code: number | null, signal: string | null): Promise<ExecResult> {
    const paths = runOutputPaths(this.dir, id);
    return {
      code,
      signal: signal as NodeJS.Signals | null,
      stdout: await readFile(paths.stdout, 'utf8'),
      stderr: await readFile(paths.stderr, 'utf8'),
    };
  }
}
