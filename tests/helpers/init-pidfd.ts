import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { Pidfd } from '../../src/ns/pidfd.js';
import { realLibc } from './native.js';

const held = new Map<number, Pidfd>();

/**
 * A pidfd of `pid`, as the broker holds an init's (UpcallTarget.init): one per
 * pid per test process, opened again once that process has exited. Closed when
 * the test process exits.
 */
export function initPidfd(pid: number): Pidfd {
  const cached = held.get(pid);
  if (cached && !cached.closed && cached.isAlive()) return cached;
  cached?.close();
  const pidfd = Pidfd.open(realLibc(), pid);
  held.set(pid, pidfd);
  return pidfd;
}

/** A pidfd of a process that has exited and been reaped (a stand-in for an init whose pid may be reused); the caller closes it. */
export async function exitedPidfd(): Promise<Pidfd> {
  const child = spawn('sleep', ['3600'], { stdio: 'ignore' });
  let pidfd: Pidfd;
  try {
    pidfd = Pidfd.open(realLibc(), child.pid!);
  } finally {
    child.kill('SIGKILL');
    if (child.exitCode === null && child.signalCode === null) await once(child, 'exit');
  }
  return pidfd;
}
