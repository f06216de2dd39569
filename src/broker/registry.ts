import { randomBytes } from 'node:crypto';
import { inject, injectable } from 'inversify';
import { BrokerError } from '../common/errors.js';
import { Clock, LoggerFactory, type Logger } from '../common/tokens.js';
import type { RegistrationInfo } from '../common/types.js';
import { Libc } from '../ns/libc.js';
import { kernelCompat } from '../ns/kernel-compat.js';
import { resolveMountOf } from '../ns/mount-resolver.js';
import { mntNsIdOf } from '../ns/mount-syscalls.js';
import type { Pidfd } from '../ns/pidfd.js';
import { type Context, ContextTable } from './context-table.js';
import { NamespaceWalker } from './namespace-walker.js';
import { StateStore, type StoredRegistration } from './state-store.js';

/** A registration as held: the wire form's fields, with the live Context in place of its summary. */
export type Registration = Omit<RegistrationInfo, 'state' | 'context'> & {
  context: Context;
  /** Set once its mount is gone (MountWatcher); in memory only: a restart checks again. */
  unmounted?: boolean;
  /**
   * Who named the source: the kernel (mountinfo), host root (`register --for-pid`, `mount --for-pid`), or
   * a tenant overriding it. Only the first two route kernel-thread requests (docs/walk-rule.md, case 6):
   * a container must not be able to claim a server name. Absent in records saved before it existed.
   */
  sourceFrom?: 'kernel' | 'agent' | 'caller';
  /**
   * The mount namespace the mount was resolved in (the mounter's), kept for the registrations whose unmount is
   * watched, so a restarted broker watches them again (MountWatcher.watchRestored): its nsfs identity, and its
   * 64-bit id (decimal) where the kernel names namespaces by id (NS_MNT_GET_INFO). Absent in older records.
   */
  mntns?: StoredMntns;
};

export interface StoredMntns {
  dev: number;
  ino: number;
  id?: string;
}

/** Filesystems whose registrations route kernel-thread requests, so their end matters (docs/walk-rule.md, case 6). */
export const NETWORK_FS = /^(cifs|smb3|nfs|nfs4|ceph|afs)$/;

/** The registrations whose unmount the broker watches: network filesystems, and those made with `--for-pid` (host root's). */
export function isMountWatched(reg: Pick<Registration, 'fstype' | 'sourceFrom'>): boolean {
  return NETWORK_FS.test(reg.fstype ?? '') || reg.sourceFrom === 'agent';
}

export interface RegisterRequest {
  mounter: Pidfd;
  cred: { pid: number; uid: number; gid: number };
  mountpoint: string;
  fstype?: string | undefined;
  source?: string | undefined;
  /** Host root registers for a container (`register-for`, `mount-for`): its source is trusted. */
  agent?: boolean;
}

export type Selector = { id: string } | { mountId: number } | { path: string };

/** How ops name a registration: a mount id (number), a registration id ("r-..."), or a mountpoint. */
export function selectorOf(mount: string | number): Selector {
  return typeof mount === 'number' ? { mountId: mount } : /^r-[0-9a-f]{12}$/.test(mount) ? { id: mount } : { path: mount };
}

/**
 * Registrations by id, with indexes by mount id and by path, each pointing at
 * a shared Context. Every change is persisted (appended to the state journal,
 * src/broker/state-store.ts) before it is acknowledged.
 */
@injectable()
export class Registry {
  private readonly byId = new Map<string, Registration>();
  private readonly log: Logger;
  private readonly registeredListeners: Array<(reg: Registration, mounter: Pidfd) => void> = [];

  constructor(
    @inject(Libc) private readonly libc: Libc,
    @inject(NamespaceWalker) private readonly walker: NamespaceWalker,
    @inject(ContextTable) private readonly contexts: ContextTable,
    @inject(StateStore) private readonly store: StateStore,
    @inject(Clock) private readonly clock: Clock,
    @inject(LoggerFactory) loggers: LoggerFactory,
  ) {
    this.log = loggers.get('broker:Registry');
  }

  async register(req: RegisterRequest): Promise<Registration> {
    const started = this.clock.monotonic();
    const mount = resolveMountOf(this.libc, req.mounter, req.mountpoint);
    const context = this.contexts.adopt(this.walker.hold(req.mounter));
    const reg: Registration = {
      id: `r-${randomBytes(6).toString('hex')}`,
      mountpoint: req.mountpoint,
      mountId: mount.mountId,
      mountIdKind: mount.mountIdKind,
      fstype: req.fstype ?? mount.fstype,
      source: req.source ?? mount.source,
      sourceFrom: req.agent === true ? 'agent' : req.source === undefined || req.source === mount.source ? 'kernel' : 'caller',
      mounter: req.cred,
      createdAt: new Date(this.clock.now()).toISOString(),
      context,
    };
    if (isMountWatched(reg)) {
      const mntns = mntnsRecordOf(this.libc, req.mounter);
      if (mntns !== null) reg.mntns = mntns;
    }
    this.add(reg);
    try {
      // The store writes only what is on disk into its snapshots: a failed add leaves no trace there.
      await this.store.add(toStored(reg));
    } catch (err) {
      this.remove(reg);
      throw new BrokerError('E_IO', `cannot save state: ${String(err)}`);
    }
    this.log.audit('registered', {
      id: reg.id, mountpoint: reg.mountpoint, mountId: reg.mountId, fstype: reg.fstype, mounterPid: req.cred.pid,
      mounterUid: req.cred.uid, context: context.id, initPid: context.initPid, pidns: context.pidnsId.ino,
      userns: context.usernsId.ino, durationMs: Math.round((this.clock.monotonic() - started) * 1000) / 1000,
    });
    for (const l of this.registeredListeners) l(reg, req.mounter);
    return reg;
  }

  /** Called once a registration is saved, with the mounter (its pidfd is closed after the call). */
  onRegistered(listener: (reg: Registration, mounter: Pidfd) => void): void {
    this.registeredListeners.push(listener);
  }

  /** Removed once the state on disk no longer has it; a failed save keeps it registered (E_IO), as the disk does. */
  async unregister(reg: Registration): Promise<void> {
    try {
      await this.store.remove(reg.id);
    } catch (err) {
      throw new BrokerError('E_IO', `cannot save state: ${String(err)}`);
    }
    this.remove(reg);
    this.log.audit('unregistered', { id: reg.id, mountpoint: reg.mountpoint, context: reg.context.id });
  }

  list(): Registration[] {
    return [...this.byId.values()];
  }

  find(selector: Selector, among?: readonly Registration[]): Registration[] {
    if ('id' in selector) {
      const r = this.byId.get(selector.id);
      return r && (among === undefined || among.includes(r)) ? [r] : [];
    }
    const rs = among ?? this.list();
    if ('mountId' in selector) return rs.filter((r) => r.mountId === selector.mountId);
    return rs.filter((r) => r.mountpoint === selector.path);
  }

  /** The registrations of one context (its refs: no scan of all of them). */
  ofContext(ctx: Context): Registration[] {
    const out: Registration[] = [];
    for (const id of ctx.refs) {
      const r = this.byId.get(id);
      if (r) out.push(r);
    }
    return out;
  }

  get size(): number {
    return this.byId.size;
  }

  /** Put back a record from the state file; the caller has re-validated its context. */
  restore(record: StoredRegistration, context: Context): Registration {
    const reg: Registration = {
      id: record.id, mountpoint: record.mountpoint, mountId: record.mountId, mountIdKind: record.mountIdKind,
      fstype: record.fstype, source: record.source, mounter: record.mounter, createdAt: record.createdAt, context,
    };
    if (record.sourceFrom !== undefined) reg.sourceFrom = record.sourceFrom;
    if (record.mntns !== undefined) reg.mntns = record.mntns;
    this.add(reg);
    return reg;
  }

  /** Save a restored registration again, with what the restore learnt (its mount namespace); E_IO if that fails. */
  async resave(reg: Registration): Promise<void> {
    try {
      await this.store.add(toStored(reg));
    } catch (err) {
      throw new BrokerError('E_IO', `cannot save state: ${String(err)}`);
    }
  }

  /** A snapshot of the state on disk without the stored records that were not restored (a compaction). */
  persist(): Promise<void> {
    return this.store.compact((id) => this.byId.has(id));
  }

  private add(reg: Registration): void {
    this.byId.set(reg.id, reg);
    reg.context.refs.add(reg.id);
  }

  private remove(reg: Registration): void {
    if (!this.byId.delete(reg.id)) return;
    this.contexts.unref(reg.context, reg.id);
  }
}

/**
 * The wire form. Built field by field, not with rest and spread: copying a record with some keys left out
 * makes V8 build a new hidden class for each copy, in old space, so a `list` of 10,000 left 3 MB there for
 * the next full GC (and took 10x the time).
 */
export function toInfo(reg: Registration): RegistrationInfo {
  const context = reg.context;
  return {
    id: reg.id, mountpoint: reg.mountpoint, mountId: reg.mountId, mountIdKind: reg.mountIdKind, fstype: reg.fstype,
    source: reg.source, mounter: reg.mounter, createdAt: reg.createdAt,
    state: reg.unmounted === true ? 'unmounted' : context.state, context: context.info(),
  };
}

/** The mounter's mount namespace: nsfs identity, and its id where the kernel has NS_MNT_GET_INFO; null once it has exited. */
export function mntnsRecordOf(libc: Libc, mounter: Pidfd): StoredMntns | null {
  try {
    using ns = mounter.namespace('mnt');
    const id = kernelCompat(libc).has('statmount-ns') ? mntNsIdOf(libc, ns.fd) : null;
    return { ...ns.identity(), ...(id !== null ? { id: id.toString() } : {}) };
  } catch {
    return null;
  }
}

/** The record on disk, field by field (see toInfo). */
function toStored(reg: Registration): StoredRegistration {
  const context = reg.context;
  const stored: StoredRegistration = {
    id: reg.id, mountpoint: reg.mountpoint, mountId: reg.mountId, mountIdKind: reg.mountIdKind, fstype: reg.fstype,
    source: reg.source, mounter: reg.mounter, createdAt: reg.createdAt,
    context: { initPid: context.initPid, initStartTime: context.initStartTime, pidns: context.pidnsId, userns: context.usernsId },
  };
  if (reg.sourceFrom !== undefined) stored.sourceFrom = reg.sourceFrom;
  if (reg.mntns !== undefined) stored.mntns = reg.mntns;
  return stored;
}
