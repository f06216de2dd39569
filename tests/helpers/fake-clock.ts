import type { Clock, Timers } from '../../src/common/tokens.js';

/**
 * A Clock, and Timers on it, that move only when told: time-based decisions
 * (rates, expiries, idle timers) are tested without sleeping. advance() fires
 * the timers that come due, in order, each at its own time.
 */
export class FakeClock implements Clock, Timers {
  private readonly timers = new Set<{ at: number; fn: () => void }>();

  constructor(private ms = 1_700_000_000_000, private mono = 1000) {}

  now(): number {
    return this.ms;
  }

  monotonic(): number {
    return this.mono;
  }

  after(ms: number, fn: () => void): () => void {
    const t = { at: this.mono + Math.max(0, ms), fn };
    this.timers.add(t);
    return () => void this.timers.delete(t);
  }

  /** Timers not yet fired nor cancelled. */
  get pending(): number {
    return this.timers.size;
  }

  /** Move both clocks forward by `ms`, firing what comes due on the way. */
  advance(ms: number): void {
    const end = this.mono + ms;
    for (;;) {
      let next: { at: number; fn: () => void } | undefined;
      for (const t of this.timers) if (t.at <= end && (next === undefined || t.at < next.at)) next = t;
      if (next === undefined) break;
      this.timers.delete(next);
      this.set(next.at);
      next.fn();
    }
    this.set(end);
  }

  private set(mono: number): void {
    this.ms += mono - this.mono;
    this.mono = mono;
  }
}
