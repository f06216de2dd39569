import { monitorEventLoopDelay, PerformanceObserver, type IntervalHistogram } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { injectable } from 'inversify';

export interface FailureRecord {
  time: string;
  type: string;
  code: string;
  message: string;
  context?: string;
}

const RECENT_FAILURES = 20;

/**
 * Prometheus metrics (prom-client) and the short memory `status` shows. Gauges
 * read live state through providers at scrape time, so nothing is kept twice.
 */
@injectable()
export class Metrics {
  readonly registry = new Registry();
  private readonly upcalls = new Counter({
    name: 'upcall_broker_upcalls_total', help: 'Upcalls by type (dns, exec, request-key) and outcome (ok, error code)',
    labelNames: ['type', 'outcome'], registers: [this.registry],
  });
  private readonly latency = new Histogram({
    name: 'upcall_broker_upcall_duration_seconds', help: 'Upcall latency by type', labelNames: ['type'],
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [this.registry],
  });
  private readonly registrations = new Counter({
    name: 'upcall_broker_registration_decisions_total', help: 'Registration decisions by outcome',
    labelNames: ['outcome'], registers: [this.registry],
  });
  private readonly relays = new Counter({
    name: 'upcall_broker_dns_relays_total', help: 'DNS relays given to upcalls: started for it, or reused (kept idle since an earlier upcall)',
    labelNames: ['how'], registers: [this.registry],
  });
  private readonly keyRoutes = new Counter({
    name: 'upcall_broker_key_routes_total', help: 'Kernel key requests by the route that chose their context (kthread-ambiguous: contexts disagreed)',
    labelNames: ['route'], registers: [this.registry],
  });
  private readonly failures: FailureRecord[] = [];
  private loopDelay: IntervalHistogram | null = null;
  private gcObserver: PerformanceObserver | null = null;
  /** GC pauses since the previous scrape: the longest, their sum, how many (ms). */
  private gc = { max: 0, total: 0, count: 0 };
  private readonly counts = new Map<string, number>();

  /** Gauges whose value is read from live state when scraped. */
  gauge(name: string, help: string, read: () => number): void {
    new Gauge({ name, help, registers: [this.registry], collect() { this.set(read()); } });
  }

  /**
   * Measure how long the event loop is blocked (perf_hooks.monitorEventLoopDelay,
   * 1 ms resolution: a block longer than about 1 ms shows), served as
   * upcall_broker_event_loop_delay_seconds{stat="max|p99|p50|mean"} over the
   * time since the previous scrape. Only while metrics are served: the 1 ms
   * timer is not free.
   */
  watchEventLoop(): void {
    if (this.loopDelay) {
      this.loopDelay.enable();
      this.gcObserver?.observe({ entryTypes: ['gc'] });
      return;
    }
    const h = monitorEventLoopDelay({ resolution: 1 });
    h.enable();
    this.loopDelay = h;
    new Gauge({
      name: 'upcall_broker_event_loop_delay_seconds',
      help: 'Event loop delay since the previous scrape (1 ms resolution), by statistic',
      labelNames: ['stat'],
      registers: [this.registry],
      collect() {
        const ns = (v: number) => (Number.isFinite(v) ? v / 1e9 : 0);
        this.set({ stat: 'max' }, ns(h.max));
        this.set({ stat: 'p99' }, ns(h.percentile(99)));
        this.set({ stat: 'p50' }, ns(h.percentile(50)));
        this.set({ stat: 'mean' }, ns(h.mean));
        h.reset();
      },
    });
    // What of that delay is garbage collection (every GC pause stops the event loop).
    const gc = this.gc;
    this.gcObserver = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        gc.max = Math.max(gc.max, e.duration);
        gc.total += e.duration;
        gc.count++;
      }
    });
    this.gcObserver.observe({ entryTypes: ['gc'] });
    new Gauge({
      name: 'upcall_broker_gc_pause_seconds',
      help: 'Garbage-collection pauses since the previous scrape: the longest (max) and their sum (total)',
      labelNames: ['stat'],
      registers: [this.registry],
      collect() {
        this.set({ stat: 'max' }, gc.max / 1000);
        this.set({ stat: 'total' }, gc.total / 1000);
        Object.assign(gc, { max: 0, total: 0, count: 0 });
      },
    });
  }

  unwatchEventLoop(): void {
    this.loopDelay?.disable();
    this.gcObserver?.disconnect();
  }

  upcall(type: string, outcome: string, seconds: number, failure?: Omit<FailureRecord, 'time' | 'type' | 'code'>): void {
    this.upcalls.inc({ type, outcome });
    this.latency.observe({ type }, seconds);
    const key = `${type}:${outcome}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    if (outcome !== 'ok') this.fail({ type, code: outcome, message: failure?.message ?? outcome, ...(failure?.context ? { context: failure.context } : {}) });
  }

  /** Which context answered a kernel key request (docs/walk-rule.md, cases 6–10). */
  keyRoute(route: string): void {
    this.keyRoutes.inc({ route });
  }

  registration(outcome: string, message?: string): void {
    this.registrations.inc({ outcome });
    if (outcome !== 'ok') this.fail({ type: 'register', code: outcome, message: message ?? outcome });
  }

  relay(how: 'started' | 'reused'): void {
    this.relays.inc({ how });
  }

  upcallCounts(): Record<string, number> {
    return Object.fromEntries(this.counts);
  }

  recentFailures(): FailureRecord[] {
    return [...this.failures];
  }

  private fail(f: Omit<FailureRecord, 'time'>): void {
    this.failures.push({ time: new Date().toISOString(), ...f });
    if (this.failures.length > RECENT_FAILURES) this.failures.shift();
  }
}
