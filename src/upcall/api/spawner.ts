import type { ChildProcess, StdioOptions } from 'node:child_process';
import type { BrokerError } from '../../common/errors.js';
import type { Pidfd } from '../../ns/pidfd.js';

/**
 * The one-shot spawner as the rest of the broker uses it (the C
 * upcall-spawner, src/upcall/native-spawner.ts NativeSpawner): enter a
 * context from its init's pidfd, then exec a program or run a builtin.
 */
export interface SpawnRequest {
  target: Pidfd;
  argv: readonly string[];
  cwd?: string;
  /** Run the spawner's own builtin named argv[0] after entering (no exec), instead of a program. */
  builtin?: boolean;
  /** stdin/stdout/stderr for the program, as for child_process.spawn (default: pipes). */
  stdio?: [StdioOptions, StdioOptions, StdioOptions] | undefined;
}

export interface SpawnResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: Buffer;
}

export const Spawner = Symbol('Spawner');
export interface Spawner {
  /** Start argv inside the target's namespaces; the returned process is the spawner. */
  start(req: SpawnRequest): { child: ChildProcess; failure: Promise<BrokerError | null> };
  /** Start, collect output, and fail with the spawner's own error code when it could not run argv. */
  run(req: SpawnRequest): Promise<SpawnResult>;
}
