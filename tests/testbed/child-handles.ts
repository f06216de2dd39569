/**
 * Long-lived processes started inside a container, as handles that know the
 * *host* pid of the process the test cares about (the kernel reports host
 * pids, e.g. for a socket peer or an upcall's caller, so that is what tests
 * compare against).
 */
import { STOP_THEN_EXEC, collect, requireNsPids, spawnStopped } from './nsenter.js';
import type { ExecOptions, ExecResult } from './nsenter.js';
import { childrenOf, cmdline, identify, signalIfSame, stillExists, waitFor } from './procfs.js';
import type { ProcIdentity } from './procfs.js';
import { scaled } from './time-scale.js';

export interface ChildHandle {
  /** Host pid of the process itself (never of nsenter/unshare around it). */
  readonly hostPid: number;
  /** Its pid in each pid namespace it is in, host first (/proc/PID/status NSpid). */
  readonly nsPids: readonly number[];
  readonly identity: ProcIdentity;
  /**
   * Resolves when the process (or the launcher whose child it is) has
   * exited, with what it printed. Rejects if output could not be collected.
   */
  wait(): Promise<ExecResult>;
  /** Signals the process if it is still the same process; false if it is gone. */
  kill(signal?: NodeJS.Signals): Promise<boolean>;
}

/** A bound for a broken start, not a speed: a loaded 2-core machine has taken over 5 s to exec node. */
const DISCOVERY_TIMEOUT_MS = scaled(30_000);
export const DEFAULT_PROBE_ARGV: readonly string[] = ['sleep', 'infinity'];

/** Something that wants every process we start, so teardown can wait for it. */
export type Tracker = (done: Promise<unknown>) => void;

export async function makeHandle(identity: ProcIdentity, done: Promise<ExecResult>): Promise<ChildHandle> {
  // A test may never call wait(); its rejection must not become unhandled.
  done.catch(() => undefined);
  return {
    hostPid: identity.pid,
    nsPids: await requireNsPids(identity.pid),
    identity,
    wait: () => done,
    kill: (signal = 'SIGKILL') => signalIfSame(identity, signal),
  };
}

/**
 * Waits until a resumed stop-then-exec wrapper has exec'd the program (or
 * already died), so the handle's pid shows the program's exe and cmdline.
 */
export function awaitExec(identity: ProcIdentity): Promise<true> {
  return waitFor(
    `process ${identity.pid} to exec its program`,
    async () => {
      if (!(await stillExists(identity))) return true;
      const argv = await cmdline(identity.pid);
      return argv === null || argv[2] !== STOP_THEN_EXEC ? true : null;
    },
    DISCOVERY_TIMEOUT_MS,
  );
}

/** Starts argv via nsenter; resolves once it has exec'd, with its host pid. */
export async function spawnIn(initPid: number, argv: readonly string[], track: Tracker, opts: ExecOptions = {}): Promise<ChildHandle> {
  const started = await spawnStopped(initPid, argv, opts);
  const done = collect(started.nsenter, `spawn ${argv.join(' ')}`, opts.timeoutMs);
  track(done);
  const handle = await makeHandle(started.program, done);
  started.resume();
  await awaitExec(started.program);
  return handle;
}

function waitForExec(pid: number, argv0: string | undefined): Promise<true> {
  return waitFor(
    `process ${pid} to exec ${argv0}`,
    async () => ((await cmdline(pid))?.[0] === argv0 ? true : null),
    DISCOVERY_TIMEOUT_MS,
  );
}

/**
 * A process in a NESTED pid namespace (child of the container's, owned by
 * the same user namespace): `unshare --pid --fork --mount-proc argv`. The
 * handle is for argv, i.e. pid 1 of the nested namespace (unshare's child).
 */
export async function startNestedPidns(initPid: number, argv: readonly string[], track: Tracker): Promise<ChildHandle> {
  const launcher = await spawnIn(initPid, ['unshare', '--pid', '--fork', '--mount-proc', '--', ...argv], track);
  const pid = await waitFor(
    'pid 1 of the nested pid namespace',
    async () => (await childrenOf(launcher.hostPid))[0],
    DISCOVERY_TIMEOUT_MS,
  );
  await waitForExec(pid, argv[0]);
  const identity = await identify(pid);
  if (!identity) throw new Error(`testbed: nested pid 1 (host pid ${pid}) vanished`);
  return makeHandle(identity, launcher.wait());
}

/**
 * A process in a CHILD user namespace of the container's that stayed in the
 * container's pid namespace: `unshare --user --map-root-user argv` (no fork,
 * so the launcher's pid becomes argv's pid after exec).
 */
export async function startChildUserns(initPid: number, argv: readonly string[], track: Tracker): Promise<ChildHandle> {
  const handle = await spawnIn(initPid, ['unshare', '--user', '--map-root-user', '--', ...argv], track);
  await waitForExec(handle.hostPid, argv[0]);
  return handle;
}
