import { inject, injectable } from 'inversify';
import type { RelayPoolConfig } from '../../common/config-schema.js';
import { relayPoolOf } from '../../common/defaults.js';
import { BrokerConfig, Clock, Random, Timers } from '../../common/tokens.js';
import { Metrics } from '../../service/metrics.js';
import { ContextEvents } from '../api/context-events.js';
import type { UpcallContext } from '../api/upcall-context.js';
import { PREFETCH, RelayLauncher, type RunningRelay } from './relay-launcher.js';
import type { RelayTransport } from './relay-transport.js';

/** How DNS relays are kept (config `dns`): part of the one config schema (src/common/config-schema.ts). */
export type { RelayPoolConfig } from '../../common/config-schema.js';
export { DEFAULT_RELAY_POOL } from '../../common/defaults.js';

/** A relay lent to one upcall; give it back with release(). */
export interface RelayLease {
  readonly transport: RelayTransport;
  /** Kept from an earlier upcall (its files are asked for again now), not started for this one. */
  readonly reused: boolean;
  /** ok: the upcall ended normally. The relay is kept if it can serve again, else stopped. */
  release(ok: boolean): void;
}

interface Parked {
  relay: RunningRelay;
  context: UpcallContext;
  /** The end of its reuse (Clock.monotonic): its start, when its context was checked, plus its own reuse window. */
  until: number;
  /** Ends its idleness (Timers.after). */
  cancel: () => void;
}

/**
 * DNS relays kept alive between upcalls, per context: starting one (a child
 * of the container's init, through the zygote's template) is most of a DNS
 * upcall's cost, and under load most of the machine's CPU. A relay is lent to
 * one upcall at a time; it is kept afterwards only if the upcall ended
 * normally with nothing in flight (RelayTransport.settled), its context is
 * live, and it is younger than its reuse window: relayReuseMs less up to a
 * quarter at random, so that relays started together (a hundred containers'
 * first upcalls) are not all replaced together, each replacement a spawn and
 * some a capture of the context (whose templates' ages are spread as well,
 * upcall-zygote's --context-ttl-ms). A change to the init's context (a setns,
 * new credentials) is seen by a DNS upcall at most relayReuseMs after it
 * happened (every spawn is checked: docs/security.md). The files are read
 * again for every upcall. Relays of a context whose init exited, or that was
 * let go (its last registration removed), are stopped at once.
 */
@injectable()
export class RelayPool {
  private readonly byContext = new Map<string, Parked[]>();
  /** Every parked relay, oldest first (a Set keeps insertion order). */
  private readonly all = new Set<Parked>();
  private readonly config: RelayPoolConfig;
  private closed = false;

  constructor(
    @inject(RelayLauncher) private readonly launcher: RelayLauncher,
    @inject(BrokerConfig) broker: BrokerConfig,
    @inject(Clock) private readonly clock: Clock,
    @inject(ContextEvents) contexts: ContextEvents,
    @inject(Metrics) private readonly metrics: Metrics,
    @inject(Timers) private readonly timers: Timers,
    @inject(Random) private readonly random: Random,
  ) {
    this.config = relayPoolOf(broker);
    contexts.onInitExit((ctx) => this.drain(ctx.id));
    contexts.onRelease((ctx) => this.drain(ctx.id));
    metrics.gauge('upcall_broker_dns_relays_idle', 'DNS relays kept idle between upcalls', () => this.all.size);
  }

  /** Idle relays now (tests, status). */
  get idle(): number {
    return this.all.size;
  }

  /** A relay for one upcall in `context`: an idle one if there is a usable one, else a new one. */
  async acquire(context: UpcallContext, fresh = false): Promise<RelayLease> {
    const list = fresh ? undefined : this.byContext.get(context.id);
    while (list && list.length > 0) {
      const p = list.pop()!; // the most recently used
      this.unpark(p);
      if (this.usable(p.relay, context, p.until)) {
        p.relay.park(false);
        p.relay.transport.prefetch(PREFETCH);
        this.metrics.relay('reused');
        return this.lease(p.relay, context, p.until, true);
      }
      void p.relay.stop();
    }
    const relay = await this.launcher.start(context);
    this.metrics.relay('started');
    const reuseMs = this.config.relayReuseMs - Math.floor(this.random.next() * (this.config.relayReuseMs / 4));
    return this.lease(relay, context, this.clock.monotonic() + reuseMs, false);
  }

  /** Stop every idle relay (broker shutdown). */
  close(): void {
    this.closed = true;
    for (const p of [...this.all]) this.drop(p);
  }

  private lease(relay: RunningRelay, context: UpcallContext, until: number, reused: boolean): RelayLease {
    let released = false;
    return {
      transport: relay.transport,
      reused,
      release: (ok) => {
        if (released) return;
        released = true;
        if (ok && this.usable(relay, context, until)) this.park(relay, context, until);
        else void relay.stop();
      },
    };
  }

  private usable(relay: RunningRelay, context: UpcallContext, until: number): boolean {
    return !this.closed && this.config.relayReuseMs > 0 && context.state === 'live' && context.namespaces !== null &&
      relay.transport.settled && this.clock.monotonic() < until;
  }

  private park(relay: RunningRelay, context: UpcallContext, until: number): void {
    const list = this.byContext.get(context.id) ?? [];
    if (list.length >= this.config.relaysIdlePerContext) {
      void relay.stop();
      return;
    }
    while (this.all.size >= this.config.relaysIdle) this.drop(this.all.values().next().value!);
    const left = until - this.clock.monotonic();
    const p: Parked = { relay, context, until, cancel: this.timers.after(Math.max(1, Math.min(this.config.relayIdleMs, left)), () => this.drop(p)) };
    relay.park(true);
    list.push(p);
    this.byContext.set(context.id, list);
    this.all.add(p);
  }

  private unpark(p: Parked): void {
    p.cancel();
    this.all.delete(p);
    const list = this.byContext.get(p.context.id);
    if (!list) return;
    const i = list.indexOf(p);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.byContext.delete(p.context.id);
  }

  private drop(p: Parked): void {
    this.unpark(p);
    void p.relay.stop();
  }

  private drain(contextId: string): void {
    for (const p of [...(this.byContext.get(contextId) ?? [])]) this.drop(p);
  }
}
