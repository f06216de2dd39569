import { spawn } from 'node:child_process';
import { PID_AT } from './fixtures.js';

/** A host process (`sleep 60`) under a pid chosen by the test. */
export interface PidHolder {
  readonly pid: number;
  /** Kill it (by its pid, while its parent still holds the pid, so never another process). */
  kill(signal?: NodeJS.Signals): void;
}

/**
 * Make the kernel give `pid` to a new host process, as CRIU does: clone3()
 * with set_tid (tests/fixtures/pid-at.c). Deterministic, unlike writing
 * ns_last_pid and forking, which another process forking in between defeats
 * on a busy machine. Fails when the pid is in use.
 */
export function takePid(pid: number): Promise<PidHolder> {
  const helper = spawn(PID_AT, [String(pid), 'sleep', '60'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  helper.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  return new Promise((resolve, reject) => {
    helper.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
      if (stdout !== `ok ${pid}\n`) return;
      resolve({
        pid,
        kill(signal: NodeJS.Signals = 'SIGKILL') {
          // pid-at reaps its child before it exits: while it runs, `pid` is still ours.
          if (helper.exitCode !== null || helper.signalCode !== null) return;
          try {
            process.kill(pid, signal);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err; // reaped just now
          }
        },
      });
    });
    helper.once('error', reject);
    helper.once('exit', (code) => reject(new Error(code === 3
      ? `pid ${pid} is in use by another process: ${stderr.trim()}`
      : `ub-pid-at (clone3 with set_tid) failed with ${code}: ${stderr.trim()}${stdout.trim()}`)));
  });
}
