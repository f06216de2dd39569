import { inject, injectable } from 'inversify';
import { BrokerError } from '../common/errors.js';
import { LoggerFactory, type Logger } from '../common/tokens.js';
import { COMPAT_FEATURE_NAMES, kernelCompat } from '../ns/kernel-compat.js';
import { Libc } from '../ns/libc.js';
import { type NamespaceFd, type NsIdentity, sameNs } from '../ns/namespace-fd.js';
import { Pidfd } from '../ns/pidfd.js';
import { startTimeOf } from '../ns/proc-info.js';
import type { HeldNamespaces, StoredContext } from './held-namespaces.js';

/** Run `build`; if it throws, close `fds` (whose ownership passes to what `build` returns). */
function owning<T>(fds: ReadonlyArray<{ close(): void }>, build: () => T): T {
  try {
    return build();
  } catch (err) {
    for (const fd of fds) fd.close();
    throw err;
  }
}

/**
 * The rule of Eric W. Biederman's proposal (docs/walk-rule.md): from the
 * mounter's user namespace U and pid namespace P, refuse unless U owns P; walk
 * up NS_GET_PARENT while U still owns the parent; the outermost such P0 is the
 * container's own; hold P0 and a pidfd to its init.
 */
@injectable()
export class NamespaceWalker {
  private readonly log: Logger;
  private readonly ownPidns: NsIdentity;

  constructor(@inject(Libc) private readonly libc: Libc, @inject(LoggerFactory) loggers: LoggerFactory) {
    this.log = loggers.get('broker:NamespaceWalker');
    // Probe the kernel's features once, at start, and say which fallbacks are in use.
    const compat = kernelCompat(libc);
    const features = Object.fromEntries(COMPAT_FEATURE_NAMES.map((f) => [f, compat.state(f)]));
    if (Object.values(features).some((v) => v !== 'native')) this.log.warn('kernel features: fallbacks in use (upcall-broker doctor says what they cost)', features);
    using self = Pidfd.open(libc, process.pid);
    using pidns = self.namespace('pid');
    this.ownPidns = pidns.identity();
  }

  /** Find P0 for a process; the caller owns the returned fds. Throws E_NS_NOT_OWNED. */
  walk(process: Pidfd): { p0: NamespaceFd; userns: NamespaceFd; depth: number } {
    const userns = process.namespace('user');
    let current: NamespaceFd;
    try {
      current = process.namespace('pid'); // the process may exit between the two: the user namespace fd must not leak
    } catch (err) {
      userns.close();
      throw err;
    }
    try {
      const usernsId = userns.identity();
      if (!this.ownedBy(current, usernsId)) {
        const pidns = current.identity().ino;
        this.log.warn('pid namespace not owned by the user namespace', { pid: process.pid, pidns, userns: usernsId.ino });
        throw new BrokerError('E_NS_NOT_OWNED',
          `pid namespace ${pidns} of process ${process.pid} is not owned by its user namespace ${usernsId.ino}`,
          { pid: process.pid, pidns, userns: usernsId.ino });
      }
      let depth = 0;
      for (;;) {
        const parent = current.parent(); // null above the broker's own pid namespace
        if (parent === null) break;
        if (!this.ownedBy(parent, usernsId)) {
          parent.close();
          break;
        }
        current.close();
        current = parent;
        depth++;
      }
      return { p0: current, userns, depth };
    } catch (err) {
      current.close();
      userns.close();
      throw err;
    }
  }

  /** walk(), then find and hold P0's init, checked to really live in P0 (registration). */
  hold(process: Pidfd): HeldNamespaces {
    const { p0, userns, depth } = this.walk(process);
    return this.holdWalked(p0, userns, depth, [process.pid]);
  }

  /**
   * The second half of hold(), for a walk already made (request-key's walk
   * first looks for a live registered context of P0): find P0's init and build
   * the record. Owns `p0` and `userns`: closed if this throws.
   */
  holdWalked(p0: NamespaceFd, userns: NamespaceFd, depth: number, hints: readonly number[] = []): HeldNamespaces {
    return owning([p0, userns], () => {
      const init = this.initOf(p0, hints);
      return owning([init], () => this.record(p0, userns, init, depth));
    });
  }

  /**
   * Broker start: hold a stored registration's context again, only if it still
   * holds against the kernel: the same init (pid and start time), still pid 1
   * of the same pid namespace, owned by the same user namespace. Nothing is
   * ever re-pointed at another process. Throws E_INIT_EXITED (E_NO_PROCESS
   * when the pid is gone, E_NS_NOT_OWNED when the owner changed).
   */
  rehold(stored: StoredContext): HeldNamespaces {
    const host = this.isOwnPidns(stored.pidns);
    const init = Pidfd.open(this.libc, stored.initPid);
    const p0 = owning([init], () => {
      // Our own pid namespace's init may refuse PIDFD_GET_*_NAMESPACE (see initOf).
      using self = host ? Pidfd.open(this.libc, process.pid) : null;
      return (self ?? init).namespace('pid');
    });
    return owning([init, p0], () => {
      const userns = p0.owner();
      return owning([userns], () => {
        const held = this.record(p0, userns, init, 0);
        const pid = stored.initPid;
        const details = { initPid: pid, pidns: stored.pidns.ino };
        if (held.initStartTime !== stored.initStartTime) throw new BrokerError('E_INIT_EXITED', `pid ${pid} now belongs to another process (start time differs)`, details);
        if (!sameNs(held.pidnsId, stored.pidns)) throw new BrokerError('E_INIT_EXITED', `pid ${pid} is not in pid namespace ${stored.pidns.ino} any more`, details);
        if (!sameNs(held.usernsId, stored.userns)) throw new BrokerError('E_NS_NOT_OWNED', `pid namespace owner is not user namespace ${stored.userns.ino}`, { ...details, userns: stored.userns.ino });
        if (p0.pidFromPidns(1, [pid]) !== pid || !init.isAlive()) throw new BrokerError('E_INIT_EXITED', `pid ${pid} is not the init of its pid namespace`, details);
        return held;
      });
    });
  }

  /** The one place a held-namespaces record is built. */
  private record(p0: NamespaceFd, userns: NamespaceFd, init: Pidfd, depth: number): HeldNamespaces {
    const pidnsId = p0.identity();
    return { p0, userns, init, pidnsId, usernsId: userns.identity(), initStartTime: startTimeOf(init), depth, host: this.isOwnPidns(pidnsId) };
  }

  /**
   * pid 1 of P0 as the broker sees it (NS_GET_PID_FROM_PIDNS), opened as a
   * pidfd, then checked: the pidfd's process lives in P0 and pid 1 of P0 still
   * maps to the same pid. A pid reused between the ioctl and pidfd_open belongs
   * to another pid namespace (P0's own pids die with its init), so this closes
   * the window. `hints`: host pids to try first where the kernel lacks
   * NS_GET_PID_FROM_PIDNS (before 6.11 the init is found in /proc).
   */
  initOf(p0: NamespaceFd, hints: readonly number[] = []): Pidfd {
    if (this.isOwnPidns(p0.identity())) {
      // P0 is the broker's own pid namespace (a host mounter, or a container
      // sharing the host's user namespace): its init is our pid 1, which cannot
      // be replaced while we live. Its namespaces may be closed to us (pid 1 is
      // not ptrace-readable on some machines, so PIDFD_GET_*_NAMESPACE gives EACCES).
      return Pidfd.open(this.libc, 1);
    }
    const initPid = this.initPidOf(p0, hints);
    let init: Pidfd;
    try {
      init = Pidfd.open(this.libc, initPid);
    } catch (err) {
      throw asInitExited(err, p0);
    }
    try {
      using initPidns = init.namespace('pid');
      if (!sameNs(initPidns.identity(), p0.identity()) || this.initPidOf(p0, [initPid]) !== initPid || !init.isAlive()) {
        throw new BrokerError('E_INIT_EXITED', `init of pid namespace ${p0.identity().ino} exited`);
      }
      return init;
    } catch (err) {
      init.close();
      throw asInitExited(err, p0);
    }
  }

  isOwnPidns(id: NsIdentity): boolean {
    return sameNs(id, this.ownPidns);
  }

  private initPidOf(p0: NamespaceFd, hints: readonly number[]): number {
    try {
      return p0.pidFromPidns(1, hints);
    } catch (err) {
      throw asInitExited(err, p0);
    }
  }

  private ownedBy(pidns: NamespaceFd, usernsId: NsIdentity): boolean {
    using owner = pidns.owner();
    return sameNs(owner.identity(), usernsId);
  }
}

/** A process that vanished while we looked at a context's init means the init has exited. */
function asInitExited(err: unknown, p0: NamespaceFd): unknown {
  return BrokerError.from(err).code === 'E_NO_PROCESS'
    ? new BrokerError('E_INIT_EXITED', `init of pid namespace ${p0.identity().ino} has exited`, { pidns: p0.identity().ino })
    : err;
}
