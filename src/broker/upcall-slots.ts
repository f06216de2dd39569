import { inject, injectable } from 'inversify';
import { BrokerConfig } from '../common/tokens.js';
import type { NsIdentity } from '../ns/namespace-fd.js';
import { ContextSlots, DEFAULT_LIMITS } from '../server/limits.js';

/**
 * Per-context upcall concurrency (limits.contextUpcalls), shared by every op
 * that starts an upcall (exec, resolve, request-key). Keyed by P0's identity,
 * so a registered context and a request-key requester's temporary hold of the
 * same container count together.
 */
@injectable()
export class UpcallSlots {
  private readonly slots: ContextSlots;

  constructor(@inject(BrokerConfig) config: BrokerConfig) {
    this.slots = new ContextSlots(config.limits?.contextUpcalls ?? DEFAULT_LIMITS.contextUpcalls);
  }

  /** Run `work` holding one of the context's slots; E_BUSY at once when none is free. */
  async run<T>(p0: NsIdentity, work: () => Promise<T>): Promise<T> {
    const release = this.slots.acquire(`${p0.dev}:${p0.ino}`);
    try {
      return await work();
    } finally {
      release();
    }
  }
}
