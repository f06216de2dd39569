/**
 * Starting one container: process A, the id maps, pid 1 and its readiness.
 * Every step has a name that ends up in the error message, together with
 * the tail of the stages' stderr, so a broken container says what broke.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { writeIdMaps } from './idmap.js';
import { LineChannel } from './line-channel.js';
import { childrenOf, identify, waitFor } from './procfs.js';
import type { ProcIdentity } from './procfs.js';
import { INIT_SH, STAGE1_SH, UNSHARE_NS_ARGS } from './scripts.js';

/** Environment of everything in the container; nothing of the test runner's leaks in. */
export const CONTAINER_ENV: Readonly<Record<string, string>> = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/',
  LANG: 'C.UTF-8',
};

export interface LaunchOptions {
  readonly name: string;
  readonly dir: string;
  /** null: share the host user namespace. */
  readonly uidBase: number | null;
  /** CIDR addresses for the container's eth0. */
  readonly addresses: readonly string[];
  readonly timeoutMs: number;
  /** Execs between INIT_SH and node init.js, keeping pid 1 (the unusual init's chain). */
  readonly execPrefix?: readonly string[];
  /**
   * Set when the prefix makes pid 1 print "hold" and wait (UNUSUAL_SH --hold):
   * called with pid 1's host pid before it execs on, e.g. to move it into cgroups.
   */
  readonly hold?: (initPid: number) => Promise<void>;
}

export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface Launched {
  /** Process A: the `unshare` parent of pid 1, a child of the test process. */
  readonly proc: ChildProcess;
  readonly exited: Promise<ExitInfo>;
  readonly channel: LineChannel;
  readonly init: ProcIdentity;
  /** pid of the DNS server inside the container's pid namespace. */
  readonly dnsContainerPid: number;
  readonly stderrTail: () => string;
}

const INIT_JS = fileURLToPath(new URL('./init.js', import.meta.url));
const STDERR_TAIL_BYTES = 4096;

function launchArgv(o: LaunchOptions): string[] {
  const initArgs = [
    ...['/bin/sh', '-c', INIT_SH, 'init', o.dir, o.name, process.execPath, INIT_JS, ...o.addresses],
    ...['--', ...(o.execPrefix ?? [])],
  ];
  if (o.uidBase === null) return [...UNSHARE_NS_ARGS, '--', ...initArgs];
  // initArgs[3..] are INIT_SH's positional args; STAGE1 re-inserts them after INIT_SH.
  return ['--user', '--keep-caps', '--', '/bin/sh', '-c', STAGE1_SH, 'stage1', INIT_SH, ...initArgs.slice(4)];
}

function collectTail(stream: NodeJS.ReadableStream): () => string {
  let tail = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    tail = (tail + chunk).slice(-STDERR_TAIL_BYTES);
  });
  return () => tail;
}

/** A's only child is pid 1 of the container (unshare --fork forks exactly once). */
async function findInit(a: number, timeoutMs: number): Promise<ProcIdentity> {
  const pid = await waitFor('pid 1 to appear as child of unshare', async () => (await childrenOf(a))[0], timeoutMs);
  const id = await identify(pid);
  if (!id) throw new Error(`pid 1 (host pid ${pid}) vanished`);
  return id;
}

/** The handshake of the diagram in scripts.ts; `step` names the current step for errors. */
async function startUp(
  o: LaunchOptions,
  proc: ChildProcess,
  channel: LineChannel,
  step: (s: string) => void,
): Promise<Pick<Launched, 'init' | 'dnsContainerPid'>> {
  const pid = proc.pid;
  if (pid === undefined) throw new Error('could not spawn unshare');
  if (o.uidBase !== null) {
    step('wait for user namespace');
    await channel.waitForLine('userns', o.timeoutMs);
    step('write uid_map/gid_map');
    await writeIdMaps(pid, o.uidBase);
    channel.sendLine('go');
  }
  if (o.hold) {
    step('wait for init to hold before exec');
    await channel.waitForLine('hold', o.timeoutMs);
    step('prepare held init');
    await o.hold((await findInit(pid, o.timeoutMs)).pid);
    channel.sendLine('go');
  }
  step('wait for init (mounts, loopback, DNS server)');
  const dnsContainerPid = await channel.waitForEvent('ready event from init', o.timeoutMs, (e) => {
    if (e.ev === 'fatal') throw new Error(`init failed: ${e.message}`);
    return e.ev === 'ready' ? e.dnsPid : undefined;
  });
  step('find host pid of init');
  return { init: await findInit(pid, o.timeoutMs), dnsContainerPid };
}

export async function launch(o: LaunchOptions): Promise<Launched> {
  const proc = spawn('unshare', launchArgv(o), { stdio: ['pipe', 'pipe', 'pipe'], env: { ...CONTAINER_ENV } });
  const exited = new Promise<ExitInfo>((resolve) => {
    proc.once('exit', (code, signal) => resolve({ code, signal }));
    proc.once('error', () => resolve({ code: null, signal: null })); // e.g. unshare not installed
  });
  const stderrTail = collectTail(proc.stderr!);
  const channel = new LineChannel(proc.stdout!, proc.stdin!);
  let current = 'spawn unshare';
  try {
    const started = await startUp(o, proc, channel, (s) => (current = s));
    return { proc, exited, channel, stderrTail, ...started };
  } catch (err) {
    // Killing A also kills pid 1 (unshare --kill-child), hence the namespace.
    proc.kill('SIGKILL');
    const exit = await exited;
    const reason = err instanceof Error ? err.message : String(err);
    throw new Error(
      `testbed: container "${o.name}" failed at step "${current}": ${reason}` +
        ` (unshare exited with code ${exit.code}, signal ${exit.signal})\n--- stderr of setup ---\n${stderrTail()}`,
    );
  }
}
