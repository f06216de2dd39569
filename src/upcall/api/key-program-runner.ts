import type { UpcallContext } from './upcall-context.js';

/** A generic request-key rule's program, run in a context (src/upcall/request-key/program-runner.ts). */
export interface ProgramRun {
  context: UpcallContext;
  argv: string[];
  stdin: Buffer | null;
  timeoutMs: number;
  /** stdout bytes kept; one more is read to tell "exactly at the cap" from "over it". */
  outputCap: number;
}

export interface ProgramResult {
  code: number | null;
  signal: string | null;
  stdout: Buffer;
  stderr: Buffer;
  /** stdout went over outputCap. */
  overflow: boolean;
  timedOut: boolean;
  /** The program could not be started (not found in the container, not executable). */
  notRunnable: 'not-found' | 'cannot-exec' | null;
}

/** Runs a rule's program as a child of the context's init (ZygoteProgramRunner). */
export interface KeyProgramRunner {
  run(req: ProgramRun): Promise<ProgramResult>;
}
