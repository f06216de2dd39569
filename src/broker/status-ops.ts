import { inject, injectable } from 'inversify';
import { BrokerError } from '../common/errors.js';
import type { StatusInfo } from '../common/types.js';
import { PROTOCOL_VERSION, VERSION } from '../common/paths.js';
import type { OpContribution, RequestHandlers } from '../server/request-handlers.js';
import { Metrics } from '../service/metrics.js';
import { Authorizer } from './authorizer.js';
import { ContextTable } from './context-table.js';
import { Registry } from './registry.js';

export type StatusJson = StatusInfo;

/** `status` (host root): what an operator wants at a glance. Also feeds the gauges. */
@injectable()
export class StatusOps implements OpContribution {
  private readonly startedAt = Date.now();

  constructor(
    @inject(Registry) private readonly registry: Registry,
    @inject(ContextTable) private readonly contexts: ContextTable,
    @inject(Metrics) private readonly metrics: Metrics,
    @inject(Authorizer) private readonly auth: Authorizer,
  ) {
    metrics.gauge('upcall_broker_live_contexts', 'Containers whose init the broker holds', () => contexts.liveCount);
    metrics.gauge('upcall_broker_registrations', 'Registrations held', () => registry.size);
    metrics.gauge('upcall_broker_uptime_seconds', 'Seconds since the broker started', () => (Date.now() - this.startedAt) / 1000);
  }

  registerOps(handlers: RequestHandlers): void {
    handlers.add('status', (_p, peer) => {
      if (!this.auth.isHostRoot(peer)) throw new BrokerError('E_PERMISSION', 'status is for host root only');
      return this.status();
    });
  }

  status(): StatusJson {
    const regs = this.registry.list();
    const live = regs.filter((r) => r.context.state === 'live').length;
    return {
      version: VERSION, protocol: PROTOCOL_VERSION, pid: process.pid,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      contexts: { live: this.contexts.liveCount },
      registrations: { total: regs.length, live, initExited: regs.length - live },
      upcalls: this.metrics.upcallCounts(),
      recentFailures: this.metrics.recentFailures(),
    };
  }
}
