/**
 * Host-side readers of /proc used to build, inspect and verify containers.
 *
 * Everything here reads the *host's* view (the test process runs in the
 * initial namespaces), so pids are host pids unless a name says otherwise.
 */
import { readFile, readdir, readlink } from 'node:fs/promises';

export type NsKind = 'user' | 'pid' | 'mnt' | 'net' | 'uts' | 'ipc' | 'cgroup';
export const NS_KINDS: readonly NsKind[] = ['user', 'pid', 'mnt', 'net', 'uts', 'ipc', 'cgroup'];
export type NsInodes = Record<NsKind, number>;

/**
 * A pid plus its start time (clock ticks since boot). Pids are recycled, so
 * before signalling a pid we did not just see alive we compare start times:
 * "same pid, same start time" is the kernel-visible identity of a process.
 */
export interface ProcIdentity {
  readonly pid: number;
  readonly startTime: string;
}

/** Namespace inode number from the "/proc/PID/ns/KIND -> kind:[inode]" link. */
export async function nsInode(pid: number | 'self', kind: NsKind): Promise<number> {
  const link = await readlink(`/proc/${pid}/ns/${kind}`);
  const match = /\[(\d+)\]$/.exec(link);
  if (!match?.[1]) throw new Error(`unexpected namespace link ${link} for pid ${pid}`);
  return Number(match[1]);
}

export async function nsInodes(pid: number | 'self'): Promise<NsInodes> {
  const entries = await Promise.all(NS_KINDS.map(async (k) => [k, await nsInode(pid, k)] as const));
  return Object.fromEntries(entries) as NsInodes;
}

/** Reads a /proc file, mapping "process is gone" to null instead of throwing. */
async function readProc(path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') return null;
    throw err;
  }
}

/** Fields of /proc/PID/stat after the "(comm)" field, which may contain spaces. */
async function statFields(pid: number): Promise<string[] | null> {
  const stat = await readProc(`/proc/${pid}/stat`);
  if (stat === null) return null;
  return stat.slice(stat.lastIndexOf(')') + 2).trim().split(' ');
}

export interface ProcStat {
  readonly state: string;
  readonly ppid: number;
  readonly startTime: string;
}

export async function procStat(pid: number): Promise<ProcStat | null> {
  const f = await statFields(pid);
  // Field numbers from proc(5): state is 3, ppid 4, starttime 22; f[0] is field 3.
  if (!f || f[0] === undefined || f[1] === undefined || f[19] === undefined) return null;
  return { state: f[0], ppid: Number(f[1]), startTime: f[19] };
}

export async function identify(pid: number): Promise<ProcIdentity | null> {
  const st = await procStat(pid);
  return st ? { pid, startTime: st.startTime } : null;
}

/** True while the identified process exists (including as a zombie). */
export async function stillExists(id: ProcIdentity): Promise<boolean> {
  const st = await procStat(id.pid);
  return st !== null && st.startTime === id.startTime;
}

/** Sends a signal only if the pid still names the same process. */
export async function signalIfSame(id: ProcIdentity, signal: NodeJS.Signals): Promise<boolean> {
  if (!(await stillExists(id))) return false;
  try {
    process.kill(id.pid, signal);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

/**
 * Children of every thread of PID. /proc/PID/task/TID/children only lists the
 * children forked by that one thread, and node forks from its main thread
 * but we do not want to depend on that.
 */
export async function childrenOf(pid: number): Promise<number[]> {
  let tids: string[];
  try {
    tids = await readdir(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const lists = await Promise.all(tids.map((tid) => readProc(`/proc/${pid}/task/${tid}/children`)));
  return lists.flatMap((l) => (l ?? '').split(' ').filter(Boolean).map(Number));
}

/** NSpid: the process's pid in each pid namespace, outermost (host) first. */
export async function nsPids(pid: number): Promise<number[] | null> {
  const status = await readProc(`/proc/${pid}/status`);
  const line = status?.split('\n').find((l) => l.startsWith('NSpid:'));
  return line ? line.slice('NSpid:'.length).trim().split(/\s+/).map(Number) : null;
}

export async function cmdline(pid: number): Promise<string[] | null> {
  const raw = await readProc(`/proc/${pid}/cmdline`);
  return raw === null ? null : raw.split('\0').slice(0, -1);
}

/** All host processes whose namespace of the given kind is `inode`. */
export async function processesInNamespace(kind: NsKind, inode: number): Promise<ProcIdentity[]> {
  const pids = (await readdir('/proc')).filter((e) => /^\d+$/.test(e)).map(Number);
  const found: ProcIdentity[] = [];
  await Promise.all(
    pids.map(async (pid) => {
      const ino = await nsInode(pid, kind).catch(() => null);
      const id = ino === inode ? await identify(pid) : null;
      if (id) found.push(id);
    }),
  );
  return found;
}

/** Polls `probe` until it yields a value; the error names what we waited for. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | null | undefined>,
  timeoutMs: number,
  intervalMs = 2,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== null && value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`testbed: timed out after ${timeoutMs}ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
