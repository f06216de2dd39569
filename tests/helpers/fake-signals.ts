import type { Signals } from '../../src/common/tokens.js';

/** Signals delivered by the test (raise) and kills recorded (kills), not sent. */
export class FakeSignals implements Signals {
  readonly kills: Array<{ pid: number; signal: NodeJS.Signals }> = [];
  private readonly handlers = new Map<NodeJS.Signals, Set<() => void>>();

  on(signal: NodeJS.Signals, handler: () => void): () => void {
    const set = this.handlers.get(signal) ?? new Set();
    const entry = () => handler(); // one entry per registration, as process.on
    set.add(entry);
    this.handlers.set(signal, set);
    return () => void set.delete(entry);
  }

  kill(pid: number, signal: NodeJS.Signals): void {
    this.kills.push({ pid, signal });
  }

  /** Deliver `signal` to every handler; how many there were. */
  raise(signal: NodeJS.Signals): number {
    const set = [...(this.handlers.get(signal) ?? [])];
    for (const h of set) h();
    return set.length;
  }
}
