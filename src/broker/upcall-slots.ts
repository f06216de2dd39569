import { inject, injectable } from 'inversify';
import { BrokerConfig } from '../common/tokens.js';
import { ContextSlots, DEFAULT_LIMITS } from '../server/limits.js';
import type { Context } from './context-table.js';

/**
 * Per-container upcall concurrency (limits.contextUpcalls), shared by every op
 * that starts an upcall (exec, resolve, request-key). Keyed by the container a
 * context belongs to (Context.container), so a registered context, a
 * request-key requester's temporary hold of the same container and contexts
 * nested inside it (their own user and pid namespaces) all count together.
 */
@injectable()
export class UpcallSlots {
  private readonly slots: ContextSlots;

  constructor(@inject(BrokerConfig) config: BrokerConfig) {
    this.slots = new ContextSlots(config.limits?.contextUpcalls ?? DEFAULT_LIMITS.contextUpcalls);
  }

  /** Run `work` holding one of the container's slots; E_BUSY at once when none is free. */
  async run<T>(ctx: Pick<Context, 'container'>, work: () => Promise<T>): Promise<T> {
    const release = this.slots.acquire(ctx.container);
    try {
      return await work();
    } finally {
      release();
    }
  }
}
