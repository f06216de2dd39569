/**
 * Stopping a container and proving it is gone.
 *
 * SIGKILL to pid 1 makes the kernel kill every process of the pid namespace
 * (nested pid namespaces included); the mount namespace, and with it the
 * bind mounts, dies with its last process. We then check rather than trust:
 * no process we saw in the container survives, nothing of its directory is
 * mounted on the host, and the directory is gone.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { CgroupSet } from './cgroups.js';
import { removeDir } from './container-dir.js';
import type { Launched } from './launch.js';
import { processesInNamespace, signalIfSame, stillExists } from './procfs.js';
import type { NsInodes, ProcIdentity } from './procfs.js';

export interface TeardownTarget {
  readonly name: string;
  readonly dir: string;
  readonly launched: Launched;
  readonly ns: NsInodes;
  readonly ownUserns: boolean;
  /** Completion of everything started inside (nsenter'd programs, init children). */
  readonly pending: readonly Promise<unknown>[];
  /** The unusual init's cgroups: removable only once every process has gone. */
  readonly cgroups: CgroupSet | null;
}

const EXIT_TIMEOUT_MS = 5_000;

function within<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), ms)));
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Every process that belongs to the container, taken while pid 1 is alive:
 * namespace inode numbers are recycled once a namespace dies, so a scan made
 * afterwards could match a stranger. Processes of nested pid namespaces show
 * only their innermost pid ns, so we also collect by user namespace.
 */
async function snapshotMembers(t: TeardownTarget): Promise<ProcIdentity[]> {
  if (!(await stillExists(t.launched.init))) return [];
  const byPid = await processesInNamespace('pid', t.ns.pid);
  const byUser = t.ownUserns ? await processesInNamespace('user', t.ns.user) : [];
  return (await stillExists(t.launched.init)) ? [...byPid, ...byUser] : [];
}

async function killAndWait(t: TeardownTarget, problems: string[]): Promise<void> {
  await signalIfSame(t.launched.init, 'SIGKILL');
  t.launched.channel.end();
  if ((await within(t.launched.exited, EXIT_TIMEOUT_MS)) === 'timeout') {
    problems.push(`unshare (host pid ${t.launched.proc.pid}) did not exit after pid 1 was killed`);
    t.launched.proc.kill('SIGKILL');
    await t.launched.exited;
  }
  if ((await within(Promise.allSettled(t.pending), EXIT_TIMEOUT_MS)) === 'timeout') {
    problems.push('some process started in the container (nsenter/init child) did not finish');
  }
}

async function survivors(members: readonly ProcIdentity[]): Promise<number[]> {
  const alive = await Promise.all(members.map(async (m) => ((await stillExists(m)) ? m.pid : null)));
  return alive.filter((p): p is number => p !== null);
}

/** Tears the container down; throws listing every check that failed. */
export async function teardown(t: TeardownTarget): Promise<void> {
  const problems: string[] = [];
  const members = await snapshotMembers(t);
  await killAndWait(t, problems);
  const left = await survivors(members);
  if (left.length > 0) problems.push(`processes still alive: ${left.join(', ')}`);
  await t.cgroups?.remove().catch((err: Error) => problems.push(err.message));
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  if (mountinfo.includes(t.dir)) problems.push(`host still has mounts under ${t.dir}`);
  await removeDir(t.dir);
  if (existsSync(t.dir)) problems.push(`could not remove ${t.dir}`);
  if (problems.length > 0) throw new Error(`testbed: teardown of "${t.name}": ${problems.join('; ')}`);
}
