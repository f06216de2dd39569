import { inject, injectable } from 'inversify';
import { z } from 'zod';
import { BrokerError } from '../common/errors.js';
import type { PeerIdentity } from '../server/peer-identity.js';
import { parseParams } from '../server/protocol.js';
import type { OpContribution, RequestHandlers } from '../server/request-handlers.js';
import { liveTarget } from '../upcall/api/upcall-context.js';
import { UpcallRunner } from '../upcall/api/upcall-runner.js';
import { Authorizer } from './authorizer.js';
import { RegistrationOps } from './registration-ops.js';
import { selectorOf } from './registry.js';
import { UpcallDispatcher } from './upcall-dispatcher.js';
import type { UpcallRecord } from './upcall-record.js';

const MAX_OUTPUT = 4 * 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 30_000;

const ExecParams = z.object({
  mount: z.union([z.string().min(1).max(4096), z.number().int().nonnegative()]),
  argv: z.array(z.string().max(4096)).min(1).max(256),
  stdinBase64: z.string().max(1024 * 1024).optional(),
  timeoutMs: z.number().int().positive().max(600_000).optional(),
}).strict();

export interface ExecResult {
  code: number | null;
  signal: string | null;
  stdoutBase64: string;
  stderrBase64: string;
  truncated: boolean;
  durationMs: number;
}

/**
 * `exec`: run a program as an upcall in a registration's context (host root
 * only: the program is chosen by the caller), through the zygote: a true child
 * of the context's init. A dead context fails with E_INIT_EXITED before
 * anything is started.
 */
@injectable()
export class ExecOps implements OpContribution {
  constructor(
    @inject(RegistrationOps) private readonly registrations: RegistrationOps,
    @inject(Authorizer) private readonly auth: Authorizer,
    @inject(UpcallRunner) private readonly runner: UpcallRunner,
    @inject(UpcallDispatcher) private readonly dispatcher: UpcallDispatcher,
  ) {}

  registerOps(handlers: RequestHandlers): void {
    handlers.add('exec', (p, peer) => this.exec(p, peer));
  }

  private async exec(params: unknown, peer: PeerIdentity): Promise<ExecResult> {
    const p = parseParams(ExecParams, params);
    if (!this.auth.isHostRoot(peer)) throw new BrokerError('E_PERMISSION', 'exec is for host root only');
    const reg = this.registrations.resolve(selectorOf(p.mount), peer);
    const target = liveTarget(reg.context, `registration ${reg.id}`, { id: reg.id, initPid: reg.context.initPid });
    const timeoutMs = p.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const audit = (ms: number, result: Record<string, unknown>): UpcallRecord =>
      ({ kind: 'exec', outcome: null, seconds: ms / 1000, event: 'upcall', audit: { kind: 'exec', id: reg.id, context: reg.context.id, argv0: p.argv[0], durationMs: ms, ...result } });
    const out = await this.dispatcher.dispatch(reg.context, () => this.runner.run({
      target,
      mode: 'exec',
      argv: p.argv,
      ...(p.stdinBase64 !== undefined ? { stdin: Buffer.from(p.stdinBase64, 'base64') } : {}),
      timeoutMs,
      outputCap: MAX_OUTPUT,
    }), {
      ok: (out, ms) => audit(ms, { pid: out.pid, code: out.code, signal: out.signal, timedOut: out.timedOut, degraded: degradedFields(out.fields) }),
      failed: (e, ms) => audit(ms, { error: e.code }),
    });
    if (out.timedOut) throw new BrokerError('E_UPCALL_TIMEOUT', 'exec timed out', { timeoutMs });
    return {
      code: out.code,
      signal: out.signal,
      stdoutBase64: out.stdout.toString('base64'),
      stderrBase64: out.stderr.toString('base64'),
      truncated: out.truncated,
      durationMs: out.durationMs,
    };
  }
}

/** The parts of the context the zygote could only approximate (for the audit line). */
function degradedFields(fields: Record<string, string>): string[] {
  return Object.entries(fields).filter(([, v]) => v.startsWith('degraded')).map(([k]) => k);
}
