import { inject, injectable } from 'inversify';
import { z } from 'zod';
import { BrokerError } from '../common/errors.js';
import { LoggerFactory, type Logger } from '../common/tokens.js';
import type { PeerIdentity } from '../server/peer-identity.js';
import { parseParams } from '../server/protocol.js';
import { RequestHandlers } from '../server/request-handlers.js';
import { DnsService } from '../upcall/dns/dns-service.js';
import { Metrics } from '../service/metrics.js';
import { RegistrationOps } from './registration-ops.js';
import { selectorOf } from './registry.js';
import { UpcallSlots } from './upcall-slots.js';

const ResolveParams = z.object({
  mount: z.union([z.string().min(1).max(4096), z.number().int().nonnegative()]),
  description: z.string().min(1).max(4096),
  callout: z.string().max(1024).optional(),
}).strict();


/** `resolve`: a dns_resolver upcall for a registration, answered in the kernel's formats. */
@injectable()
export class ResolveOps {
  private readonly log: Logger;

  constructor(
    @inject(RegistrationOps) private readonly registrations: RegistrationOps,
    @inject(DnsService) private readonly dns: DnsService,
    @inject(Metrics) private readonly metrics: Metrics,
    @inject(UpcallSlots) private readonly slots: UpcallSlots,
    @inject(LoggerFactory) loggers: LoggerFactory,
    @inject(RequestHandlers) handlers: RequestHandlers,
  ) {
    this.log = loggers.get('broker:ResolveOps');
    handlers.add('resolve', (p, peer) => this.resolve(p, peer), { tenant: true });
  }

  private async resolve(params: unknown, peer: PeerIdentity) {
    const p = parseParams(ResolveParams, params);
    const reg = this.registrations.resolve(selectorOf(p.mount), peer);
    if (reg.context.state !== 'live') throw new BrokerError('E_INIT_EXITED', `the init of registration ${reg.id} has exited`, { id: reg.id });
    const started = performance.now();
    try {
      const r = await this.slots.run(reg.context, () => this.dns.resolve(reg.context, p.description, p.callout ?? ''));
      this.metrics.upcall('dns', 'ok', r.durationMs / 1000);
      this.log.audit('upcall', {
        kind: 'dns', id: reg.id, context: reg.context.id, peerPid: peer.cred.pid, description: p.description,
        callout: p.callout ?? '', status: r.status, dnserror: r.dnserror, durationMs: Math.round(r.durationMs * 1000) / 1000,
      });
      const { payload, ...rest } = r;
      return { ...rest, payloadBase64: payload.toString('base64'), registration: reg.id, context: reg.context.info() };
    } catch (err) {
      const e = await reg.context.explain(err);
      this.metrics.upcall('dns', e.code, (performance.now() - started) / 1000, { message: e.message, context: reg.context.id });
      this.log.audit('upcall failed', { kind: 'dns', id: reg.id, context: reg.context.id, error: e.toJSON() });
      throw e;
    }
  }
}
