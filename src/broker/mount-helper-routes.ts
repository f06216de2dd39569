import { readFileSync } from 'node:fs';
import { injectable } from 'inversify';

/** How far up the parent chain a requester is looked for (mount → mount.cifs → ... is 2–3 deep). */
const MAX_DEPTH = 8;

/** Fields of /proc/<pid>/stat after the command name (proc(5)): state is field 3. */
export interface ProcStat {
  ppid: number;
  /** Field 9: PF_* flags (PF_KTHREAD 0x00200000). */
  flags: number;
  /** Field 22: start time in clock ticks since boot. */
  startTime: number;
}

export function parseStat(stat: string): ProcStat | null {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const at = (n: number) => Number(fields[n - 3]);
  const out = { ppid: at(4), flags: at(9), startTime: at(22) };
  return Number.isFinite(out.ppid) && Number.isFinite(out.flags) && Number.isFinite(out.startTime) ? out : null;
}

export function readStat(pid: number): ProcStat | null {
  try {
    return parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return null;
  }
}

/**
 * The mount helpers `mount --for-pid` is running right now, each for one
 * context (docs/walk-rule.md, case 9): a kernel request whose requester is such
 * a helper or its descendant is that mount's. Helpers are known by pid and
 * start time (a reused pid has another start time).
 */
@injectable()
export class MountHelperRoutes {
  private readonly helpers = new Map<number, { startTime: number; contextId: string }>();

  add(pid: number, startTime: number, contextId: string): void {
    this.helpers.set(pid, { startTime, contextId });
  }

  remove(pid: number): void {
    this.helpers.delete(pid);
  }

  /** The context of the helper that is `pid` or one of its ancestors; null when none is. */
  contextOf(pid: number, stat: (pid: number) => ProcStat | null = readStat): string | null {
    if (this.helpers.size === 0) return null;
    let current = pid;
    for (let depth = 0; depth < MAX_DEPTH && current > 1; depth++) {
      const s = stat(current);
      if (s === null) return null;
      const h = this.helpers.get(current);
      if (h && h.startTime === s.startTime) return h.contextId;
      current = s.ppid;
    }
    return null;
  }
}
