import { inject, injectable } from 'inversify';
import { BrokerError } from '../common/errors.js';
import { LoggerFactory, type Logger } from '../common/tokens.js';
import type { ContextInfo, RegistrationState } from '../common/types.js';
import { Libc } from '../ns/libc.js';
import type { NsIdentity } from '../ns/namespace-fd.js';
import { pollExited } from '../ns/pidfd.js';
import { brokerPidns, containerKey, containerPidns } from '../server/tenant-key.js';
import type { ContextEvents } from '../upcall/api/context-events.js';
import type { UpcallContext } from '../upcall/api/upcall-context.js';
import { type HeldNamespaces, releaseHeld } from './held-namespaces.js';

/** How long a failed upcall waits to see whether its context's init is exiting (Context.explain). */
const EXIT_SETTLE_MS = 250;

/** One container as the broker holds it: shared by every registration in the same P0. */
export class Context implements UpcallContext {
  state: RegistrationState = 'live';
  readonly refs = new Set<string>();
  readonly initPid: number;
  readonly pidnsId: NsIdentity;
  readonly usernsId: NsIdentity;
  readonly initStartTime: number;
  /**
   * The container this context is part of (server/tenant-key.ts): contexts
   * nested in one container share its upcall slots and registration quota.
   */
  readonly container: string;

  constructor(readonly id: string, private held: HeldNamespaces | null) {
    const h = held!;
    this.initPid = h.init.pid;
    this.pidnsId = h.pidnsId;
    this.usernsId = h.usernsId;
    this.initStartTime = h.initStartTime;
    this.container = containerOf(h);
  }

  /** The held fds while live; null once the init has exited (they are released then). */
  get namespaces(): HeldNamespaces | null {
    return this.held;
  }

  release(): void {
    if (this.held) releaseHeld(this.held);
    this.held = null;
  }

  /**
   * An upcall that failed to run (E_SPAWN) while this context's init is exiting
   * failed because of that: say so (E_INIT_EXITED). The init's pidfd turns
   * readable only once its pid namespace is empty, a little after the upcall
   * was killed with it, so wait a moment for it (failures only).
   */
  async explain(err: unknown): Promise<BrokerError> {
    const e = BrokerError.from(err);
    if (e.code !== 'E_SPAWN') return e;
    for (let waited = 0; waited <= EXIT_SETTLE_MS; waited += 10) {
      if (this.held === null || !this.held.init.isAlive()) {
        return new BrokerError('E_INIT_EXITED', `the init of context ${this.id} exited during the upcall`, { context: this.id, initPid: this.initPid });
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    return e;
  }

  info(): ContextInfo {
    return { id: this.id, initPid: this.initPid, pidns: this.pidnsId.ino, userns: this.usernsId.ino, initStartTime: this.initStartTime };
  }
}

const key = (id: NsIdentity) => `${id.dev}:${id.ino}`;

/** Context.container; a walk up that fails (never expected) leaves the context a container of its own. */
function containerOf(h: HeldNamespaces): string {
  try {
    return containerKey(h.host ? brokerPidns() : containerPidns(h.p0));
  } catch {
    return containerKey(h.pidnsId);
  }
}
const WATCH_INTERVAL_MS = 200;

/**
 * Live contexts by P0 identity, so registrations in one container share one set
 * of fds; and the watcher that marks a context dead the moment its init exits
 * (one poll(2) over every init pidfd). A dead context leaves the live index at
 * once: nsfs inode numbers can be reused by a later namespace, and nothing may
 * ever be re-pointed at a new init.
 */
@injectable()
export class ContextTable implements ContextEvents {
  private readonly live = new Map<string, Context>();
  private readonly all = new Map<string, Context>();
  private timer: NodeJS.Timeout | null = null;
  private seq = 0;
  private temporarySeq = 0;
  private readonly log: Logger;
  private readonly deathListeners: Array<(ctx: Context) => void> = [];
  private readonly releaseListeners: Array<(ctx: Context) => void> = [];

  constructor(@inject(Libc) private readonly libc: Libc, @inject(LoggerFactory) loggers: LoggerFactory) {
    this.log = loggers.get('broker:ContextTable');
  }

  /** Take ownership of `held`: reuse the live context of the same P0 (closing `held`), or create one. */
  adopt(held: HeldNamespaces): Context {
    const existing = this.live.get(key(held.pidnsId));
    if (existing && existing.initStartTime === held.initStartTime && existing.initPid === held.init.pid) {
      releaseHeld(held);
      return existing;
    }
    const ctx = new Context(`c-${held.pidnsId.ino}-${++this.seq}`, held);
    this.live.set(key(held.pidnsId), ctx);
    this.all.set(ctx.id, ctx);
    this.log.info('context held', { context: ctx.id, initPid: ctx.initPid, pidns: ctx.pidnsId.ino, userns: ctx.usernsId.ino });
    return ctx;
  }

  /**
   * A context for one request only (request-key's walk to a P0 nobody
   * registered): not indexed, not watched; the caller releases it when the
   * request ends.
   */
  temporary(held: HeldNamespaces): Context {
    return new Context(`k-${held.pidnsId.ino}-${++this.temporarySeq}`, held);
  }

  liveFor(pidnsId: NsIdentity): Context | undefined {
    return this.live.get(key(pidnsId));
  }

  get(id: string): Context | undefined {
    return this.all.get(id);
  }

  /** Drop a registration's reference; a context nobody references is released. */
  unref(ctx: Context, registrationId: string): void {
    ctx.refs.delete(registrationId);
    if (ctx.refs.size > 0) return;
    ctx.release();
    if (this.live.get(key(ctx.pidnsId)) === ctx) this.live.delete(key(ctx.pidnsId));
    this.all.delete(ctx.id);
    this.log.debug('context released', { context: ctx.id });
    for (const l of this.releaseListeners) l(ctx);
  }

  onInitExit(listener: (ctx: Context) => void): void {
    this.deathListeners.push(listener);
  }

  /** Called when a context is let go because no registration refers to it any more. */
  onRelease(listener: (ctx: Context) => void): void {
    this.releaseListeners.push(listener);
  }

  /** Registrations held (live or not) by the contexts of one container (Context.container). */
  registrationsIn(container: string): number {
    let n = 0;
    for (const ctx of this.all.values()) if (ctx.container === container) n += ctx.refs.size;
    return n;
  }

  get liveCount(): number {
    return this.live.size;
  }

  startWatching(): void {
    this.timer ??= setInterval(() => this.check(), WATCH_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const ctx of this.all.values()) ctx.release();
  }

  /** Poll every live init pidfd once; mark the exited ones dead. */
  check(): void {
    const contexts = [...this.live.values()].filter((c) => c.namespaces !== null);
    const exited = pollExited(this.libc, contexts.map((c) => c.namespaces!.init.fd));
    contexts.forEach((ctx, i) => {
      if (exited[i]) this.markDead(ctx);
    });
  }

  private markDead(ctx: Context): void {
    ctx.state = 'init-exited';
    ctx.release();
    this.live.delete(key(ctx.pidnsId));
    this.log.warn('context init exited', { context: ctx.id, initPid: ctx.initPid, pidns: ctx.pidnsId.ino, registrations: ctx.refs.size });
    for (const l of this.deathListeners) l(ctx);
  }
}
