/**
 * Host end of the pipes to a container's process A / init: line-oriented
 * stdout with "wait for a line matching X" (with timeout), and a stdin that
 * tolerates the other side being gone (EPIPE is expected during teardown).
 */
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import type { InitEvent, InitRequest } from './init-protocol.js';

type LineListener = (line: string) => void;

export class LineChannel {
  private readonly listeners = new Set<LineListener>();
  private readonly closeListeners = new Set<() => void>();
  private isClosed = false;

  constructor(
    input: Readable,
    private readonly output: Writable,
  ) {
    output.on('error', () => undefined);
    const rl = createInterface({ input });
    rl.on('line', (line) => [...this.listeners].forEach((l) => l(line)));
    rl.on('close', () => {
      this.isClosed = true;
      [...this.closeListeners].forEach((l) => l());
    });
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Calls `fn` for each line; returns an unsubscribe function. */
  onLine(fn: LineListener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Calls `fn` for each protocol event (JSON lines); other lines are ignored. */
  onEvent(fn: (e: InitEvent) => void): () => void {
    return this.onLine((line) => {
      if (!line.startsWith('{')) return;
      try {
        fn(JSON.parse(line) as InitEvent);
      } catch {
        // Not ours to judge: a stray line that merely looks like JSON.
      }
    });
  }

  /**
   * Resolves with the first value `pick` returns for an event, or rejects on
   * EOF or after timeoutMs (never, if undefined).
   */
  waitForEvent<T>(what: string, timeoutMs: number | undefined, pick: (e: InitEvent) => T | undefined): Promise<T> {
    return this.waitOn(what, timeoutMs, (fn) => this.onEvent(fn), pick);
  }

  /** Like waitForEvent, but for one exact plain-text line. */
  waitForLine(expected: string, timeoutMs: number): Promise<true> {
    return this.waitOn(`"${expected}"`, timeoutMs, (fn) => this.onLine(fn), (l) => l === expected || undefined);
  }

  private waitOn<I, T>(
    what: string,
    timeoutMs: number | undefined,
    subscribe: (fn: (item: I) => void) => () => void,
    pick: (item: I) => T | undefined,
  ): Promise<T> {
    return new Promise((resolve, reject) => {
      const finish = (settle: () => void): void => {
        clearTimeout(timer);
        unsubscribe();
        this.closeListeners.delete(onClose);
        settle();
      };
      const onClose = (): void => finish(() => reject(new Error(`output closed while waiting for ${what}`)));
      const timer =
        timeoutMs === undefined
          ? undefined
          : setTimeout(() => finish(() => reject(new Error(`no ${what} within ${timeoutMs}ms`))), timeoutMs);
      // `pick` may throw to fail the wait (e.g. on a "fatal" event).
      const unsubscribe = subscribe((item) => {
        try {
          const v = pick(item);
          if (v !== undefined) finish(() => resolve(v));
        } catch (err) {
          finish(() => reject(err));
        }
      });
      if (this.isClosed) onClose();
      else this.closeListeners.add(onClose);
    });
  }

  sendLine(line: string): void {
    this.output.write(line + '\n');
  }

  send(req: InitRequest): void {
    this.sendLine(JSON.stringify(req));
  }

  /** Closes our end of init's stdin: init reads EOF and exits. */
  end(): void {
    this.output.end();
  }
}
