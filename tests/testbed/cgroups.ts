/**
 * Per-container cgroups for the unusual init (unusual.ts), made by the host.
 *
 * One cgroup per mounted hierarchy (cgroup v1 controllers, named v1
 * hierarchies such as name=systemd, and cgroup2), created *below the test
 * process's own cgroup* in each: the container stays inside whatever limits
 * and accounting the test runner is under, and we only touch our subtree.
 * Pid 1 is moved in while it waits in UNUSUAL_SH, after its cgroup namespace
 * was created, so inside the container /proc/self/cgroup shows `/<name>` in
 * every hierarchy instead of `/`: something a process that entered from
 * outside without joining the cgroups would not show.
 *
 * Removal (rmdir) only works once every task has left, so it runs in
 * teardown after the processes are gone, retrying while the kernel finishes
 * releasing dying tasks.
 */
import { rmdirSync } from 'node:fs';
import { mkdir, readFile, readdir, rmdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { scaled } from './time-scale.js';

const REMOVE_TIMEOUT_MS = scaled(5_000);

interface Hierarchy {
  /** Mount point of the hierarchy, e.g. /sys/fs/cgroup/memory. */
  readonly mount: string;
  /** The test process's own cgroup in it, e.g. /user.slice/session-2.scope. */
  readonly own: string;
  readonly cpuset: boolean;
}

/** cgroup mounts; a v1 mount's super options name its controllers ("rw,cpu,cpuacct", "rw,name=systemd"). */
function parseMounts(mountinfo: string): { mount: string; type: string; opts: string[] }[] {
  return mountinfo.split('\n').flatMap((line) => {
    const [pre, post] = line.split(' - ');
    const mount = pre?.split(' ')[4];
    const [type, , superOpts] = post?.split(' ') ?? [];
    if (!mount || (type !== 'cgroup' && type !== 'cgroup2')) return [];
    return [{ mount: mount.replace(/\\040/g, ' '), type, opts: (superOpts ?? '').split(',') }];
  });
}

/** Every mounted hierarchy together with our own place in it. */
async function hierarchies(): Promise<Hierarchy[]> {
  const mounts = parseMounts(await readFile('/proc/self/mountinfo', 'utf8'));
  const lines = (await readFile('/proc/self/cgroup', 'utf8')).split('\n').filter(Boolean);
  return lines.flatMap((line) => {
    const [, controllers = '', own = '/'] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    const wanted = controllers === '' ? [] : controllers.split(',');
    // A hierarchy mounted more than once (bind mounts) is one hierarchy: the first mount will do.
    const m = mounts.find((x) =>
      wanted.length === 0 ? x.type === 'cgroup2' : x.type === 'cgroup' && wanted.every((c) => x.opts.includes(c)),
    );
    return m ? [{ mount: m.mount, own, cpuset: wanted.includes('cpuset') }] : [];
  });
}

export class CgroupSet {
  private constructor(
    /** Name of the cgroup in every hierarchy; inside the container it is `/<name>`. */
    readonly name: string,
    /** Host paths of the cgroup directories. */
    readonly paths: readonly string[],
  ) {}

  /** Creates `<mount><own>/<name>` in every hierarchy; undoes itself on failure. */
  static async create(name: string): Promise<CgroupSet> {
    const created: string[] = [];
    try {
      for (const h of await hierarchies()) {
        const parent = join(h.mount, h.own);
        const path = join(parent, name);
        await mkdir(path);
        created.push(path);
        // A new v1 cpuset has no cpus and mems, and a task cannot join it (ENOSPC).
        if (h.cpuset) {
          for (const f of ['cpuset.cpus', 'cpuset.mems']) await writeFile(join(path, f), await readFile(join(parent, f)));
        }
      }
      return new CgroupSet(name, created);
    } catch (err) {
      await new CgroupSet(name, created).remove().catch(() => undefined);
      throw err;
    }
  }

  /** Moves the whole process (all threads) into every cgroup of the set. */
  async enter(pid: number): Promise<void> {
    for (const path of this.paths) await writeFile(join(path, 'cgroup.procs'), `${pid}\n`);
  }

  /** rmdir every cgroup of the set. */
  async remove(): Promise<void> {
    const deadline = Date.now() + REMOVE_TIMEOUT_MS;
    for (const path of this.paths) await rmdirOnceFree(path, deadline);
  }

  /** Best effort, for the process 'exit' hook (synchronous; tasks may linger). */
  removeSync(): void {
    for (const path of this.paths) {
      try {
        rmdirSync(path);
      } catch {
        // Still busy or gone; the next Testbed's sweep removes it.
      }
    }
  }
}

/** rmdir, retried on EBUSY (the kernel still releasing exited tasks) until the deadline. */
async function rmdirOnceFree(path: string, deadline: number): Promise<void> {
  for (;;) {
    const code = await rmdir(path).then(
      () => 'removed',
      (err: NodeJS.ErrnoException) => err.code ?? 'error',
    );
    if (code === 'removed' || code === 'ENOENT') return;
    if (code !== 'EBUSY' || Date.now() > deadline) throw new Error(`testbed: cannot remove cgroup ${path}: ${code}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Removes empty cgroups left by SIGKILLed test processes: same naming rule
 * as the stale container directories (`isStale` decides from the name).
 */
export async function sweepStaleCgroups(isStale: (name: string, mtimeMs: number) => boolean): Promise<void> {
  for (const h of await hierarchies()) {
    const parent = join(h.mount, h.own);
    const entries = await readdir(parent, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      const path = join(parent, entry.name);
      if (entry.isDirectory() && isStale(entry.name, (await stat(path)).mtimeMs)) await rmdir(path).catch(() => undefined);
    }
  }
}
