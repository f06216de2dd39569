import type { ChildProcess, StdioOptions } from 'node:child_process';
import { join } from 'node:path';
import { inject, injectable } from 'inversify';
import { BrokerError, isErrorCode } from '../common/errors.js';
import { BrokerConfig, LoggerFactory, ProcessSpawner, type Logger } from '../common/tokens.js';
import { compatEnv } from '../ns/kernel-compat.js';
import { Spawner, type SpawnRequest, type SpawnResult } from './api/spawner.js';
import { W } from '../common/wire-constants.js';

/** Exit statuses of native-bindings/spawner/spawner.c (native-bindings/include/ub-wire.h). */
export const SPAWNER_FAILED = W.UB_EXIT_SPAWNER;
export const EXEC_FAILED = W.UB_EXIT_CANNOT_EXEC;
export const EXEC_NOT_FOUND = W.UB_EXIT_NOT_FOUND;

export { Spawner, type SpawnRequest, type SpawnResult } from './api/spawner.js';

/**
 * Runs the C spawner (build/Release/upcall-spawner). The target pidfd travels as
 * an inherited fd (fd 3 in the spawner); fd 4 is a pipe on which the spawner
 * writes one JSON error line when it fails before exec, so errno is mapped to a
 * code at the native boundary, not guessed from stderr text.
 */
@injectable()
export class NativeSpawner implements Spawner {
  private readonly log: Logger;
  private readonly path: string;

  constructor(
    @inject(ProcessSpawner) private readonly processes: ProcessSpawner,
    @inject(BrokerConfig) config: BrokerConfig,
    @inject(LoggerFactory) loggers: LoggerFactory,
  ) {
    this.log = loggers.get('upcall:NativeSpawner');
    this.path = join(config.nativeDir, 'upcall-spawner');
  }

  start(req: SpawnRequest): { child: ChildProcess; failure: Promise<BrokerError | null> } {
    if (req.argv.length === 0) throw new BrokerError('E_BAD_REQUEST', 'empty command');
    const [i, o, e] = req.stdio ?? ['pipe', 'pipe', 'pipe'];
    const args = [req.builtin ? 'builtin' : 'exec', '--pidfd', '3', '--error-fd', '4', '--cwd', req.cwd ?? '/', '--', ...req.argv];
    const child = this.processes.spawn(this.path, args, {
      stdio: [i, o, e, req.target.fd, 'pipe'] as StdioOptions,
      env: compatEnv(), // nothing of ours, but a forced kernel fallback (UB_KERNEL_COMPAT)
    });
    this.log.debug('spawner started', { pid: child.pid, targetPid: req.target.pid, argv: req.argv });
    return { child, failure: readFailure(child) };
  }

  async run(req: SpawnRequest): Promise<SpawnResult> {
    const { child, failure } = this.start(req);
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => stdout.push(b));
    child.stderr?.on('data', (b: Buffer) => stderr.push(b));
    child.stdin?.end(); // run() gives the program no input: EOF at once
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.once('error', (err) => reject(new BrokerError('E_SPAWN', `cannot run ${this.path}: ${err.message}`)));
      child.once('close', (c, s) => resolve([c, s]));
    });
    const err = await failure;
    if (err !== null && code === SPAWNER_FAILED) throw err;
    return { code, signal, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr) };
  }
}

/** Read the spawner's error pipe (fd 4) to its end: null when it stayed silent. */
async function readFailure(child: ChildProcess): Promise<BrokerError | null> {
  const pipe = child.stdio[4] as NodeJS.ReadableStream | null | undefined;
  if (!pipe) return null;
  const chunks: Buffer[] = [];
  for await (const chunk of pipe) chunks.push(Buffer.from(chunk as Buffer));
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') return null;
  return parseSpawnerError(text.split('\n')[0] ?? '');
}

/** The spawner's native codes (E_SETNS, E_EXEC, ...) become broker codes here. */
export function parseSpawnerError(line: string): BrokerError {
  let parsed: { error?: { code?: unknown; step?: unknown; errno?: unknown; message?: unknown } };
  try {
    parsed = JSON.parse(line) as typeof parsed;
  } catch {
    return new BrokerError('E_SPAWN', `spawner failed: ${line.slice(0, 200)}`);
  }
  const e = parsed.error ?? {};
  const native = typeof e.code === 'string' ? e.code : 'E_SPAWN';
  const details = { nativeCode: native, step: e.step, errno: e.errno };
  const message = typeof e.message === 'string' ? e.message : 'spawner failed';
  const code = native === 'E_EXEC' && e.errno === 2 ? 'E_NOT_FOUND'
    : isErrorCode(native) ? native : 'E_SPAWN';
  return new BrokerError(code, message, details);
}
