import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Make the kernel give `pid` to a new host process (`sleep`), as CRIU does:
 * set /proc/sys/kernel/ns_last_pid just below it, then fork. Another process
 * on a busy machine may fork in between and take it: try again, many times.
 */
export async function takePid(pid: number, attempts = 300): Promise<ChildProcess> {
  for (let attempt = 0; attempt < attempts; attempt++) {
    writeFileSync('/proc/sys/kernel/ns_last_pid', String(pid - 1));
    const child = spawn('sleep', ['60'], { stdio: 'ignore' });
    if (child.pid === pid) return child;
    child.kill('SIGKILL');
    await sleep(5);
  }
  throw new Error(`could not get pid ${pid} reused in ${attempts} attempts`);
}
