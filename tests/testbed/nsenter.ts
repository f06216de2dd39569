/**
 * Running programs inside a container from the host with nsenter.
 *
 * `nsenter --all` joins every namespace of the container's pid 1 and, as it
 * enters a user namespace, becomes uid/gid 0 there (host uid = uidBase).
 * Joining a pid namespace only affects children, so nsenter forks: the
 * program is nsenter's *child*. exec() does not care; spawn() needs that
 * child's host pid, see spawnStopped().
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { CONTAINER_ENV } from './launch.js';
import { childrenOf, identify, nsPids, procStat, signalIfSame, waitFor } from './procfs.js';
import type { ProcIdentity } from './procfs.js';
import { scaled } from './time-scale.js';

export interface ExecOptions {
  /** Written to the program's stdin, which is then closed. */
  readonly input?: string | Buffer;
  /** Added to the minimal container environment. */
  readonly env?: Readonly<Record<string, string>>;
  /** Working directory inside the container (default "/"). */
  readonly cwd?: string;
  /** Kill the program and reject after this long (default 30 s). */
  readonly timeoutMs?: number;
}

export interface ExecResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

const DEFAULT_EXEC_TIMEOUT_MS = scaled(30_000);
const PID_DISCOVERY_TIMEOUT_MS = scaled(30_000);
const NSENTER_EXIT_GRACE_MS = 1_000;

/** Starts nsenter with argv inside the container whose pid 1 is `initPid`. */
export function startNsenter(initPid: number, argv: readonly string[], opts: ExecOptions = {}): ChildProcess {
  const args = ['--target', String(initPid), '--all', `--wdns=${opts.cwd ?? '/'}`, '--', ...argv];
  const child = spawn('nsenter', args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...CONTAINER_ENV, ...opts.env } });
  child.stdin!.on('error', () => undefined); // the program may not read its stdin
  child.stdin!.end(opts.input ?? '');
  return child;
}

/**
 * Collects output and exit status. On timeout (none if undefined), kills
 * the program inside (nsenter does not forward signals), then nsenter, and
 * rejects.
 */
export function collect(child: ChildProcess, what: string, timeoutMs?: number): Promise<ExecResult> {
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve, reject) => {
    let timedOut = false;
    const onTimeout = (): void => {
      timedOut = true;
      void killTree(child); // 'close' follows and rejects
    };
    const timer = timeoutMs === undefined ? undefined : setTimeout(onTimeout, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (!timedOut) resolve({ code, signal, stdout, stderr });
      else reject(new Error(`testbed: ${what} timed out after ${timeoutMs}ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    });
  });
}

/**
 * Kills the program inside and lets nsenter reap it and exit on its own;
 * killing nsenter first would orphan the program to the container's init,
 * which (being node) never reaps it. nsenter is killed only as a fallback.
 */
async function killTree(nsenter: ChildProcess): Promise<void> {
  if (nsenter.pid === undefined || nsenter.exitCode !== null) return;
  for (const pid of await childrenOf(nsenter.pid)) {
    const id = await identify(pid);
    if (id) await signalIfSame(id, 'SIGKILL');
  }
  const exited = new Promise((resolve) => nsenter.once('exit', resolve));
  const timer = setTimeout(() => nsenter.kill('SIGKILL'), NSENTER_EXIT_GRACE_MS);
  await exited;
  clearTimeout(timer);
}

/** Runs argv in the container as its root and waits for it. */
export function execIn(initPid: number, argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const what = `exec ${argv.join(' ')}`;
  return collect(startNsenter(initPid, argv, opts), what, opts.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS);
}

export interface StoppedStart {
  readonly nsenter: ChildProcess;
  /** The program (nsenter's child); it has not run any of its own code yet. */
  readonly program: ProcIdentity;
  /** Resumes the program. */
  resume(): void;
}

/**
 * The wrapper stops itself before exec'ing the program, so we can read the
 * program's host pid without racing a program that exits quickly, and hand
 * it to the test before the program does anything.
 */
export const STOP_THEN_EXEC = 'kill -STOP $$ && exec "$@"';

async function isStopped(pid: number): Promise<true | null> {
  return (await procStat(pid))?.state === 'T' ? true : null;
}

/**
 * Starts argv stopped. nsenter (util-linux) waits for its child with
 * WUNTRACED and, when the child stops, stops itself too; when continued it
 * sends SIGCONT on to the child. So: wait for both to be stopped, then
 * continue nsenter, which continues the program. Continuing the program
 * directly would leave nsenter stopped and the program's exit unreaped.
 */
export async function spawnStopped(initPid: number, argv: readonly string[], opts: ExecOptions = {}): Promise<StoppedStart> {
  const nsenter = startNsenter(initPid, ['/bin/sh', '-c', STOP_THEN_EXEC, 'sh', ...argv], opts);
  const nsPid = nsenter.pid;
  if (nsPid === undefined) throw new Error('testbed: could not spawn nsenter');
  const what = `${argv.join(' ')} to start stopped in the container`;
  const programPid = await waitFor(what, async () => {
    if (nsenter.exitCode !== null) throw new Error(`testbed: nsenter exited (${nsenter.exitCode}) before ${what}`);
    const [pid] = await childrenOf(nsPid);
    return pid !== undefined && (await isStopped(pid)) ? pid : null;
  }, PID_DISCOVERY_TIMEOUT_MS);
  await waitFor('nsenter to stop itself after its child', () => isStopped(nsPid), PID_DISCOVERY_TIMEOUT_MS);
  const program = await identify(programPid);
  if (!program) throw new Error(`testbed: ${argv.join(' ')} vanished while stopped`);
  return { nsenter, program, resume: () => nsenter.kill('SIGCONT') };
}

/** pid of `hostPid` in each pid namespace it belongs to, host first. */
export async function requireNsPids(hostPid: number): Promise<number[]> {
  const pids = await nsPids(hostPid);
  if (!pids) throw new Error(`testbed: process ${hostPid} is gone`);
  return pids;
}
