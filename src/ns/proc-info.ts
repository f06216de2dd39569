import { readFileSync } from 'node:fs';
import { BrokerError } from '../common/errors.js';
import type { Pidfd } from './pidfd.js';

/**
 * Facts about a process that only /proc tells. Every read is followed by a
 * liveness check on the pidfd: if the process is still alive after the read,
 * the pid was not reused in between, so what we read was about this process.
 */
function readProc(pidfd: Pidfd, file: string): string {
  let text: string;
  try {
    text = readFileSync(`/proc/${pidfd.pid}/${file}`, 'utf8');
  } catch (err) {
    throw new BrokerError('E_NO_PROCESS', `cannot read /proc/${pidfd.pid}/${file}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  if (!pidfd.isAlive()) throw new BrokerError('E_NO_PROCESS', `process ${pidfd.pid} exited`);
  return text;
}

/** Field 22 of /proc/<pid>/stat: start time in clock ticks since boot (proc(5)). */
export function startTimeOf(pidfd: Pidfd): number {
  const stat = readProc(pidfd, 'stat');
  // comm (field 2) may hold spaces and parentheses: split after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const value = Number(fields[22 - 3]);
  if (!Number.isFinite(value)) throw new BrokerError('E_INTERNAL', `cannot parse /proc/${pidfd.pid}/stat`);
  return value;
}

const CAP_SYS_ADMIN = 21n;

/** Whether a /proc/<pid>/status text shows CAP_SYS_ADMIN in the effective set. */
export function statusHasSysAdmin(status: string): boolean {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return m !== null && ((BigInt(`0x${m[1]}`) >> CAP_SYS_ADMIN) & 1n) === 1n;
}

/** Whether the process holds CAP_SYS_ADMIN (in its own user namespace) in its effective set. */
export function hasSysAdmin(pidfd: Pidfd): boolean {
  return statusHasSysAdmin(readProc(pidfd, 'status'));
}

/**
 * The uid (as the broker sees it) that is root inside the process's user
 * namespace, from its uid_map read by a process in an ancestor namespace; null
 * when 0 is not mapped.
 */
export function rootUidOf(pidfd: Pidfd): number | null {
  for (const line of readProc(pidfd, 'uid_map').split('\n')) {
    const [inside, outside, count] = line.trim().split(/\s+/).map(Number);
    if (inside === undefined || outside === undefined || count === undefined) continue;
    if (inside <= 0 && 0 < inside + count) return outside - inside;
  }
  return null;
}
