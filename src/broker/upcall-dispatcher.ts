import { inject, injectable } from 'inversify';
import { BrokerError } from '../common/errors.js';
import { Clock, LoggerFactory, type Logger } from '../common/tokens.js';
import { Metrics } from '../service/metrics.js';
import type { Context } from './context-table.js';
import type { UpcallRecord, UpcallReport } from './upcall-record.js';
import { UpcallSlots } from './upcall-slots.js';

/**
 * Every upcall (exec, resolve, request-key) goes through here: it holds one
 * of its container's slots (UpcallSlots: E_BUSY at once when none is free),
 * a failure is explained by its context (an E_SPAWN while the init exits is
 * E_INIT_EXITED), and it is counted in the metrics and audited, once.
 */
@injectable()
export class UpcallDispatcher {
  private readonly log: Logger;

  constructor(
    @inject(UpcallSlots) private readonly slots: UpcallSlots,
    @inject(Metrics) private readonly metrics: Metrics,
    @inject(Clock) private readonly clock: Clock,
    @inject(LoggerFactory) loggers: LoggerFactory,
  ) {
    this.log = loggers.get('broker:UpcallDispatcher');
  }

  /** Slots and explain: `work` runs holding one of the context's container's slots. Throws BrokerError. */
  async run<T>(ctx: Pick<Context, 'container' | 'explain'>, work: () => Promise<T>): Promise<T> {
    try {
      return await this.slots.run(ctx, work);
    } catch (err) {
      throw await ctx.explain(err);
    }
  }

  /** Metrics and audit of one finished upcall (request-key records once per request, over all its contexts). */
  record(r: UpcallRecord): void {
    if (r.outcome !== null) this.metrics.upcall(r.kind, r.outcome, r.seconds, r.failure);
    if (r.route !== undefined) this.metrics.keyRoute(r.route);
    this.log.audit(r.event, r.audit);
  }

  /** run() then record(): an upcall answered by one context; its error is rethrown once recorded. */
  async dispatch<T>(ctx: Pick<Context, 'container' | 'explain'>, work: () => Promise<T>, report: UpcallReport<T>): Promise<T> {
    const started = this.clock.monotonic();
    let result: T;
    try {
      result = await this.run(ctx, work);
    } catch (err) {
      const e = BrokerError.from(err);
      this.record(report.failed(e, this.clock.monotonic() - started));
      throw e;
    }
    this.record(report.ok(result, this.clock.monotonic() - started));
    return result;
  }
}
