import type { Clock } from '../../src/common/tokens.js';

/** A Clock that moves only when told: time-based decisions are tested without sleeping. */
export class FakeClock implements Clock {
  constructor(private ms = 1_700_000_000_000, private mono = 1000) {}

  now(): number {
    return this.ms;
  }

  monotonic(): number {
    return this.mono;
  }

  /** Move both clocks forward. */
  advance(ms: number): void {
    this.ms += ms;
    this.mono += ms;
  }
}
