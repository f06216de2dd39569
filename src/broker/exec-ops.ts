import { inject, injectable } from 'inversify';
import { z } from 'zod';
import { BrokerError } from '../common/errors.js';
import { Clock, LoggerFactory, type Logger } from '../common/tokens.js';
import type { PeerIdentity } from '../server/peer-identity.js';
import { parseParams } from '../server/protocol.js';
import { RequestHandlers } from '../server/request-handlers.js';
import { Libc } from '../ns/libc.js';
import { Pidfd } from '../ns/pidfd.js';
import { Spawner } from '../upcall/native-spawner.js';
import { Authorizer } from './authorizer.js';
import { RegistrationOps } from './registration-ops.js';

const MAX_OUTPUT = 4 * 1024 * 1024;

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
 * only: the program is chosen by the caller). A dead context fails with
 * E_INIT_EXITED before anything is started.
 */
@injectable()
export class ExecOps {
  private readonly log: Logger;

  constructor(
    @inject(RegistrationOps) private readonly registrations: RegistrationOps,
    @inject(Authorizer) private readonly auth: Authorizer,
    @inject(Spawner) private readonly spawner: Spawner,
    @inject(Clock) private readonly clock: Clock,
    @inject(Libc) private readonly libc: Libc,
    @inject(LoggerFactory) loggers: LoggerFactory,
    @inject(RequestHandlers) handlers: RequestHandlers,
  ) {
    this.log = loggers.get('broker:ExecOps');
    handlers.add('exec', (p, peer) => this.exec(p, peer));
  }

  private async exec(params: unknown, peer: PeerIdentity): Promise<ExecResult> {
    const p = parseParams(ExecParams, params);
    if (!this.auth.isHostRoot(peer)) throw new BrokerError('E_PERMISSION', 'exec is for host root only');
    const selector = typeof p.mount === 'number' ? { mountId: p.mount } : p.mount.startsWith('r-') ? { id: p.mount } : { path: p.mount };
    const reg = this.registrations.resolve(selector, peer);
    const held = reg.context.namespaces;
    if (reg.context.state !== 'live' || held === null) {
      throw new BrokerError('E_INIT_EXITED', `the init of registration ${reg.id} has exited`, { id: reg.id, initPid: reg.context.initPid });
    }
    const started = this.clock.monotonic();
    // A host context runs in the broker's own namespaces (mask 0), as keyutils would.
    using self = held.host ? Pidfd.open(this.libc, process.pid) : null;
    const { child, failure } = this.spawner.start({ target: self ?? held.init, argv: p.argv });
    const out = collect(child.stdout, MAX_OUTPUT);
    const err = collect(child.stderr, MAX_OUTPUT);
    child.stdin?.end(p.stdinBase64 !== undefined ? Buffer.from(p.stdinBase64, 'base64') : undefined);
    const timer = setTimeout(() => child.kill('SIGKILL'), p.timeoutMs ?? 30_000);
    const [code, signal] = await new Promise<[number | null, string | null]>((resolve) => child.once('close', (c, s) => resolve([c, s])));
    clearTimeout(timer);
    const spawnErr = await failure;
    const durationMs = this.clock.monotonic() - started;
    this.log.audit('upcall', { kind: 'exec', id: reg.id, context: reg.context.id, argv0: p.argv[0], code, signal, durationMs });
    if (spawnErr !== null && code === 125) throw spawnErr;
    if (signal === 'SIGKILL' && durationMs >= (p.timeoutMs ?? 30_000)) throw new BrokerError('E_UPCALL_TIMEOUT', 'exec timed out');
    const [o, e] = [await out, await err];
    return { code, signal, stdoutBase64: o.data.toString('base64'), stderrBase64: e.data.toString('base64'), truncated: o.truncated || e.truncated, durationMs };
  }
}

async function collect(stream: NodeJS.ReadableStream | null, cap: number): Promise<{ data: Buffer; truncated: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  let truncated = false;
  if (stream) {
    for await (const chunk of stream) {
      const b = Buffer.from(chunk as Buffer);
      if (size + b.length > cap) {
        truncated = true;
        chunks.push(b.subarray(0, cap - size));
        size = cap;
      } else {
        chunks.push(b);
        size += b.length;
      }
    }
  }
  return { data: Buffer.concat(chunks), truncated };
}
