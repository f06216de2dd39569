/**
 * Runs a generic request-key rule's program inside a context, in exec mode,
 * as a child of the context's init, through the zygote (`UpcallRunner`).
 */
import { BrokerError } from '../../common/errors.js';
import type { UpcallRunner } from '../api/upcall-runner.js';
import type { KeyProgramRunner, ProgramResult, ProgramRun } from '../api/key-program-runner.js';
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
