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
  private readonly failures: FailureRecord[] = [];
  private readonly counts = new Map<string, number>();

  /** Gauges whose value is read from live state when scraped. */
  gauge(name: string, help: string, read: () => number): void {
    new Gauge({ name, help, registers: [this.registry], collect() { this.set(read()); } });
  }

  upcall(type: string, outcome: string, seconds: number, failure?: Omit<FailureRecord, 'time' | 'type' | 'code'>): void {
    this.upcalls.inc({ type, outcome });
    this.latency.observe({ type }, seconds);
    const key = `${type}:${outcome}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    if (outcome !== 'ok') this.fail({ type, code: outcome, message: failure?.message ?? outcome, ...(failure?.context ? { context: failure.context } : {}) });
  }

  registration(outcome: string, message?: string): void {
    this.registrations.inc({ outcome });
    if (outcome !== 'ok') this.fail({ type: 'register', code: outcome, message: message ?? outcome });
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
