import type { Limits } from '../common/config-schema.js';
import { BrokerError } from '../common/errors.js';

/** Limits and their defaults are part of the config (src/common/config-schema.ts, src/common/defaults.ts). */
export type { Limits } from '../common/config-schema.js';
export { DEFAULT_LIMITS, limitsOf } from '../common/defaults.js';

/** A token bucket: `take()` is false when the peer is over its rate. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(private readonly rate: number, private readonly burst: number, now: number) {
    this.tokens = burst;
    this.last = now;
  }

  take(now: number): boolean {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/**
 * Admission control shared by all connections: one counter per tenant and one
 * per pool. A request over a limit is answered E_BUSY at once, so a flooding
 * container gets refusals while the others keep their share.
 *
 * Exempt tenants (host root on the admin socket: host tools and the kernel's
 * request-key handler) have a pool of their own, of the global limits' size:
 * tenants holding every connection or request slot cannot lock them out.
 */
export class Admission {
  private readonly pools = { tenants: { inFlight: 0, connections: 0 }, exempt: { inFlight: 0, connections: 0 } };
  private readonly perTenant = new Map<string, { inFlight: number; connections: number }>();

  /** `exempt`: tenants held only to the global limits, in their own pool (trusted host root on the admin socket). */
  constructor(private readonly limits: Limits, private readonly exempt: ReadonlySet<string> = new Set()) {}

  connect(tenant: string): void {
    const pool = this.pool(tenant);
    if (pool.connections >= this.limits.globalConnections) {
      throw new BrokerError('E_BUSY', `the broker is at its global connection limit (${this.limits.globalConnections})`);
    }
    const t = this.tenant(tenant);
    if (t.connections >= this.limits.tenantConnections && !this.exempt.has(tenant)) {
      this.gc(tenant, t);
      throw new BrokerError('E_BUSY', `too many connections from this container (limit ${this.limits.tenantConnections})`);
    }
    t.connections++;
    pool.connections++;
  }

  disconnect(tenant: string): void {
    const t = this.tenant(tenant);
    t.connections--;
    this.pool(tenant).connections--;
    this.gc(tenant, t);
  }

  /** Reserve a slot for one request; returns the release function (idempotent). */
  admit(tenant: string): () => void {
    const t = this.tenant(tenant);
    const pool = this.pool(tenant);
    if (pool.inFlight >= this.limits.globalInFlight) throw new BrokerError('E_BUSY', 'the broker is at its global request limit');
    if (t.inFlight >= this.limits.tenantInFlight && !this.exempt.has(tenant)) throw new BrokerError('E_BUSY', `this container is at its request limit (${this.limits.tenantInFlight})`);
    pool.inFlight++;
    t.inFlight++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      pool.inFlight--;
      t.inFlight--;
      this.gc(tenant, t);
    };
  }

  get inFlight(): number {
    return this.pools.tenants.inFlight + this.pools.exempt.inFlight;
  }

  private pool(tenant: string): { inFlight: number; connections: number } {
    return this.exempt.has(tenant) ? this.pools.exempt : this.pools.tenants;
  }

  private tenant(key: string): { inFlight: number; connections: number } {
    let t = this.perTenant.get(key);
    if (!t) this.perTenant.set(key, (t = { inFlight: 0, connections: 0 }));
    return t;
  }

  private gc(key: string, t: { inFlight: number; connections: number }): void {
    if (t.inFlight === 0 && t.connections === 0) this.perTenant.delete(key);
  }
}

/**
 * Upcalls running at once per context (keyed by P0's identity), over every
 * peer and op. Over the limit is E_BUSY at once: an upcall waiting here would
 * hold its request's slots and its caller's time budget (the kernel's
 * requester sleeps uninterruptibly meanwhile), so refusing is kinder.
 */
export class ContextSlots {
  private readonly used = new Map<string, number>();

  constructor(private readonly limit: number) {}

  acquire(context: string): () => void {
    const n = this.used.get(context) ?? 0;
    if (n >= this.limit) throw new BrokerError('E_BUSY', `this container is at its upcall limit (${this.limit} at once)`, { limit: this.limit });
    this.used.set(context, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.used.get(context) ?? 1) - 1;
      if (left <= 0) this.used.delete(context);
      else this.used.set(context, left);
    };
  }
}
