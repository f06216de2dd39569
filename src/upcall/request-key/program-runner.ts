/**
 * Runs a generic request-key rule's program inside a context, in exec mode,
 * as a child of the context's init: through the zygote (`UpcallRunner`) when
 * one is bound, else through the one-shot C spawner from the held init pidfd.
 */
import { readFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { BrokerError } from '../../common/errors.js';
import type { Libc } from '../../ns/libc.js';
import { Pidfd } from '../../ns/pidfd.js';
import { EXEC_FAILED, EXEC_NOT_FOUND, SPAWNER_FAILED } from '../native-spawner.js';
import type { UpcallRunner } from '../api/upcall-runner.js';
import type { KeyProgramRunner, ProgramResult, ProgramRun } from '../api/key-program-runner.js';
import type { Spawner } from '../api/spawner.js';
import { liveTarget } from '../api/upcall-context.js';

const STDERR_CAP = 4096;

/** Through the zygote: a real child of the container's init, with init's whole context. */
export class ZygoteProgramRunner implements KeyProgramRunner {
  constructor(private readonly runner: UpcallRunner) {}

  async run(req: ProgramRun): Promise<ProgramResult> {
    const target = liveTarget(req.context);
    try {
      const out = await this.runner.run({
        target,
        mode: 'exec',
        argv: req.argv,
        ...(req.stdin !== null ? { stdin: req.stdin } : {}),
        timeoutMs: req.timeoutMs,
        outputCap: req.outputCap + 1,
      });
      // outputCap + 1 was asked for: one byte more than the cap means stdout went over it
      // (out.truncated also covers stderr, which does not matter here).
      const overflow = out.stdout.length > req.outputCap;
      return {
        code: out.code, signal: out.signal, stdout: out.stdout.subarray(0, req.outputCap), stderr: out.stderr.subarray(0, STDERR_CAP),
        overflow, timedOut: out.timedOut, notRunnable: null,
      };
    } catch (err) {
      const e = BrokerError.from(err);
      if (e.code === 'E_NOT_FOUND') return notRunnable('not-found');
      if (e.details['nativeCode'] === 'E_EXEC') return notRunnable('cannot-exec');
      throw e;
    }
  }
}

function notRunnable(kind: 'not-found' | 'cannot-exec'): ProgramResult {
  return { code: null, signal: null, stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), overflow: false, timedOut: false, notRunnable: kind };
}

/**
 * Through `upcall-spawner exec`: it enters the init's namespaces and forks the
 * program, which is the spawner's child. On timeout or overflow the spawner is
 * stopped first (SIGSTOP: it cannot reap, so its children's pids stay theirs),
 * its children are killed, then the spawner.
 */
export class SpawnerProgramRunner implements KeyProgramRunner {
  constructor(private readonly spawner: Spawner, private readonly libc: Libc) {}

  async run(req: ProgramRun): Promise<ProgramResult> {
    const { host, init } = liveTarget(req.context);
    // A host context runs in the broker's own namespaces (mask 0), as keyutils would.
    using self = host ? Pidfd.open(this.libc, process.pid) : null;
    const { child, failure } = this.spawner.start({ target: self ?? init, argv: req.argv, stdio: ['pipe', 'pipe', 'pipe'] });
    let overflow = false;
    let timedOut = false;
    const stdout: Buffer[] = [];
    let outLen = 0;
    const stderr: Buffer[] = [];
    let errLen = 0;
    child.stdout?.on('data', (b: Buffer) => {
      if (overflow) return;
      const room = req.outputCap + 1 - outLen;
      stdout.push(b.subarray(0, Math.max(0, room)));
      outLen += Math.min(b.length, Math.max(0, room));
      if (outLen > req.outputCap) {
        overflow = true;
        killTree(child);
      }
    });
    child.stderr?.on('data', (b: Buffer) => {
      if (errLen < STDERR_CAP) stderr.push(b.subarray(0, STDERR_CAP - errLen));
      errLen += b.length;
    });
    child.stdin?.on('error', () => undefined); // EPIPE when the program does not read
    child.stdin?.end(req.stdin ?? undefined);
    const timer = setTimeout(() => {
      timedOut = true;
      killTree(child);
    }, req.timeoutMs);
    const [code, signal] = await new Promise<[number | null, string | null]>((resolve, reject) => {
      child.once('error', (err) => reject(new BrokerError('E_SPAWN', `cannot run the spawner: ${err.message}`)));
      child.once('close', (c, s) => resolve([c, s]));
    }).finally(() => clearTimeout(timer));
    const spawnErr = await failure;
    if (spawnErr !== null && !timedOut && !overflow) {
      if (spawnErr.code === 'E_NOT_FOUND' || code === EXEC_NOT_FOUND && spawnErr.details['nativeCode'] === 'E_EXEC') return notRunnable('not-found');
      if (spawnErr.details['nativeCode'] === 'E_EXEC' || code === EXEC_FAILED) return notRunnable('cannot-exec');
      if (code === SPAWNER_FAILED) throw spawnErr;
    }
    return {
      code: timedOut || overflow ? null : code, signal: timedOut || overflow ? 'SIGKILL' : signal,
      stdout: Buffer.concat(stdout).subarray(0, req.outputCap), stderr: Buffer.concat(stderr), overflow, timedOut, notRunnable: null,
    };
  }
}

/** Stop the spawner, kill its direct children, then kill it. */
function killTree(child: ChildProcess): void {
  const pid = child.pid;
  if (pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(pid, 'SIGSTOP');
    let kids: number[] = [];
    try {
      kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      // it exited meanwhile: nothing to find
    }
    for (const k of kids) {
      try {
        process.kill(k, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    process.kill(pid, 'SIGKILL');
  } catch {
    // the spawner exited on its own
  }
}
