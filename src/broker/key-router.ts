import { inject, injectable } from 'inversify';
import { BrokerError } from '../common/errors.js';
import { Libc } from '../ns/libc.js';
import { type NamespaceFd, type NsIdentity, sameNs } from '../ns/namespace-fd.js';
import { Pidfd } from '../ns/pidfd.js';
import { type Context, ContextTable } from './context-table.js';
import { readForeignNfsMount } from './foreign-mounts.js';
import { decideRoute, type KeyRoute, type RouteContext, type RouteRegistration } from './key-route.js';
import { MountHelperRoutes, type ProcStat } from './mount-helper-routes.js';
import { NamespaceWalker } from './namespace-walker.js';
import { NfsMountCache } from './nfs-mount-cache.js';
import { Registry } from './registry.js';

/** PF_KTHREAD (include/linux/sched.h): the task is a kernel thread. */
const PF_KTHREAD = 0x00200000;

/** A context to answer in; a temporary one is released by the caller when the request ends. */
export interface Held {
  ctx: Context;
  temporary: boolean;
}

export type Routed = { route: KeyRoute; answerers: Held[] };

const nsKey = (id: NsIdentity) => `${id.dev}:${id.ino}`;

/**
 * Gathers what decideRoute needs from the kernel (is the requester a kernel
 * thread, its network namespace, the live registrations and their contexts'
 * network namespaces) and turns the route into contexts to answer in.
 */
@injectable()
export class KeyRouter {
  private readonly hostNetns: string;
  /** A context's network namespace is its init's, read once (docs/walk-rule.md, case 8). */
  private readonly netnsOf = new WeakMap<Context, string | null>();
  /** The host's context when no host registration is live (contextFor): held once, never released. */
  private hostHold: Context | null = null;
  /** Most mount namespaces hold no NFS mount: then their mountinfo is not read (case 8). */
  private readonly nfsMounts: NfsMountCache;

  constructor(
    @inject(Libc) private readonly libc: Libc,
    @inject(NamespaceWalker) private readonly walker: NamespaceWalker,
    @inject(ContextTable) private readonly contexts: ContextTable,
    @inject(Registry) private readonly registry: Registry,
    @inject(MountHelperRoutes) private readonly helpers: MountHelperRoutes,
  ) {
    this.nfsMounts = new NfsMountCache(libc);
    using self = Pidfd.open(libc, process.pid);
    using net = self.namespace('net');
    this.hostNetns = nsKey(net.identity());
  }

  /**
   * `stat`: the requester's /proc/<pid>/stat, read by the caller and checked
   * alive after the read. Throws what the walk throws (E_NS_NOT_OWNED,
   * E_INIT_EXITED, E_NO_PROCESS).
   */
  route(requester: Pidfd, type: string, description: string, stat: ProcStat): Routed {
    const kernelThread = (stat.flags & PF_KTHREAD) !== 0;
    // Only dns_resolver routing looks at the registrations (one pass over them; none for other key types).
    const live = type === 'dns_resolver'
      ? this.registry.list().filter((r) => r.context.state === 'live' && r.context.namespaces !== null && r.unmounted !== true)
      : [];
    const requesterNetns = kernelThread || type !== 'dns_resolver' ? null : this.netnsOfProcess(requester);
    // Only a request the netns rule could answer from a container needs the mounts (case 8), and only
    // when its mount namespace has some NFS mount (NfsMountCache asks the kernel, not the mountinfo).
    // /proc read by pid: then the pidfd must still be alive, or the pid may name another process.
    let foreignMount = false;
    if (requesterNetns !== null && requesterNetns !== this.hostNetns && this.nfsMounts.mayHaveNfs(requester)) {
      foreignMount = readForeignNfsMount(requester.pid);
      if (!requester.isAlive()) throw new BrokerError('E_NO_PROCESS', `requester ${requester.pid} exited`);
    }
    let walked: Held | undefined;
    try {
      const route = decideRoute({
        type, description, kernelThread,
        helperContext: kernelThread ? null : this.helpers.contextOf(requester.pid),
        requesterNetns,
        hostNetns: this.hostNetns,
        foreignMount,
        // A source a tenant typed in names no server for sure: only the kernel's or host root's route kernel threads.
        registrations: live.filter((r) => r.sourceFrom === 'kernel' || r.sourceFrom === 'agent')
          .map((r): RouteRegistration => ({ contextId: r.context.id, fstype: r.fstype, source: r.source })),
        contexts: type === 'dns_resolver' && !kernelThread ? this.knownContexts(live.map((r) => r.context)) : [],
      }, () => {
        walked = this.contextFor(requester);
        return { contextId: walked.ctx.id, netns: this.contextNetns(walked.ctx), host: walked.ctx.namespaces?.host ?? false };
      });
      return { route, answerers: this.answerers(route, requester, walked) };
    } catch (err) {
      if (walked?.temporary) walked.ctx.release();
      throw err;
    }
  }

  private answerers(route: KeyRoute, requester: Pidfd, walked: Held | undefined): Held[] {
    const t = route.target;
    switch (t.kind) {
      case 'decline': {
        if (walked?.temporary) walked.ctx.release();
        return [];
      }
      case 'walk': return [walked ?? this.contextFor(requester)];
      case 'host': {
        using self = Pidfd.open(this.libc, process.pid);
        return [this.contextFor(self)];
      }
      case 'contexts': {
        if (walked?.temporary) walked.ctx.release();
        return t.ids.map((id) => {
          const ctx = this.contexts.get(id);
          if (!ctx || ctx.namespaces === null) throw new BrokerError('E_INIT_EXITED', `the init of context ${id} has exited`);
          return { ctx, temporary: false };
        });
      }
    }
  }

  /** The requester's network namespace; null (treated as the host's) when it cannot be read. */
  private netnsOfProcess(p: Pidfd): string | null {
    try {
      using net = p.namespace('net');
      return nsKey(net.identity());
    } catch {
      return null;
    }
  }

  private knownContexts(all: Context[]): RouteContext[] {
    return [...new Set(all)].map((c) => ({ id: c.id, netns: this.contextNetns(c) }));
  }

  private contextNetns(ctx: Context): string | null {
    const held = ctx.namespaces;
    if (held === null) return null;
    if (held.host) return this.hostNetns;
    if (!this.netnsOf.has(ctx)) {
      let id: string | null = null;
      try {
        using net = held.init.namespace('net');
        id = nsKey(net.identity());
      } catch {
        // an init that is exiting: routed by nothing
      }
      this.netnsOf.set(ctx, id);
    }
    return this.netnsOf.get(ctx) ?? null;
  }

  /**
   * The walk rule for a process: the live registered context of its P0 when
   * there is one, else a temporary hold released when the request ends. When
   * P0 is the broker's own pid namespace (the host), the hold is made once and
   * kept: its init is our pid 1, which cannot be replaced while we run, and its
   * user namespace is the owner of our pid namespace, the same for every host
   * requester (checked anyway).
   */
  contextFor(process: Pidfd): Held {
    const { p0, userns, depth } = this.walker.walk(process);
    let reuse: Context | undefined;
    try {
      const pidnsId = p0.identity();
      const live = this.contexts.liveFor(pidnsId);
      reuse = live && live.state === 'live' && live.namespaces !== null ? live : this.walker.isOwnPidns(pidnsId) ? this.keptHost(userns) : undefined;
    } catch (err) {
      p0.close();
      userns.close();
      throw err;
    }
    if (reuse) {
      p0.close();
      userns.close();
      return { ctx: reuse, temporary: false };
    }
    const held = this.walker.holdWalked(p0, userns, depth);
    if (held.host && this.hostHold === null) {
      this.hostHold = this.contexts.temporary(held);
      return { ctx: this.hostHold, temporary: false };
    }
    return { ctx: this.contexts.temporary(held), temporary: true };
  }

  /** The kept host hold, if the walk found the same user namespace for it. */
  private keptHost(userns: NamespaceFd): Context | undefined {
    const kept = this.hostHold;
    return kept !== null && kept.namespaces !== null && sameNs(userns.identity(), kept.usernsId) ? kept : undefined;
  }
}
