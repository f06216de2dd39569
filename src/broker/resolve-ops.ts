import { inject, injectable } from 'inversify';
import { z } from 'zod';
import type { PeerIdentity } from '../server/peer-identity.js';
import { parseParams } from '../server/protocol.js';
import type { OpContribution, RequestHandlers } from '../server/request-handlers.js';
import { liveTarget } from '../upcall/api/upcall-context.js';
import { DnsService } from '../upcall/dns/dns-service.js';
import { RegistrationOps } from './registration-ops.js';
import { selectorOf } from './registry.js';
import { UpcallDispatcher } from './upcall-dispatcher.js';

const ResolveParams = z.object({
  mount: z.union([z.string().min(1).max(4096), z.number().int().nonnegative()]),
  description: z.string().min(1).max(4096),
  callout: z.string().max(1024).optional(),
}).strict();


/** `resolve`: a dns_resolver upcall for a registration, answered in the kernel's formats. */
@injectable()
export class ResolveOps implements OpContribution {
  constructor(
    @inject(RegistrationOps) private readonly registrations: RegistrationOps,
    @inject(DnsService) private readonly dns: DnsService,
    @inject(UpcallDispatcher) private readonly dispatcher: UpcallDispatcher,
  ) {}

  registerOps(handlers: RequestHandlers): void {
    handlers.add('resolve', (p, peer) => this.resolve(p, peer), { tenant: true });
  }

  private async resolve(params: unknown, peer: PeerIdentity) {
    const p = parseParams(ResolveParams, params);
    const reg = this.registrations.resolve(selectorOf(p.mount), peer);
    liveTarget(reg.context, `registration ${reg.id}`, { id: reg.id }); // E_INIT_EXITED before anything is started
    const where = { kind: 'dns', id: reg.id, context: reg.context.id };
    const r = await this.dispatcher.dispatch(reg.context, () => this.dns.resolve(reg.context, p.description, p.callout ?? ''), {
      ok: (r) => ({
        kind: 'dns', outcome: 'ok', seconds: r.durationMs / 1000, event: 'upcall',
        audit: { ...where, peerPid: peer.cred.pid, description: p.description, callout: p.callout ?? '', status: r.status, dnserror: r.dnserror, durationMs: Math.round(r.durationMs * 1000) / 1000 },
      }),
      failed: (e, ms) => ({
        kind: 'dns', outcome: e.code, seconds: ms / 1000, failure: { message: e.message, context: reg.context.id }, event: 'upcall failed',
        audit: { ...where, error: e.toJSON() },
      }),
    });
    const { payload, ...rest } = r;
    return { ...rest, payloadBase64: payload.toString('base64'), registration: reg.id, context: reg.context.info() };
  }
}
