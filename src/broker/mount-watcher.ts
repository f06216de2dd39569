import type { ChildProcess } from 'node:child_process';
import { closeSync } from 'node:fs';
import { join } from 'node:path';
import { inject, injectable } from 'inversify';
import { BrokerError } from '../common/errors.js';
import { BrokerConfig, LoggerFactory, ProcessSpawner, ProcFs, type Logger } from '../common/tokens.js';
import { COMPAT_FEATURES, kernelCompat } from '../ns/kernel-compat.js';
import { Libc } from '../ns/libc.js';
import { MW, mntNsIdOf, type MountSyscalls, mountSyscalls } from '../ns/mount-syscalls.js';
import { resolveMountOf } from '../ns/mount-resolver.js';
import { type NamespaceFd, type NsIdentity, sameNs } from '../ns/namespace-fd.js';
import { Pidfd } from '../ns/pidfd.js';
import { startTimeOf } from '../ns/proc-info.js';
import { MountEventStream, type MountEvent } from './mount-watch-events.js';
import { findViewer, mntnsIndex, mntnsOf, mountAt, mountsAt, nsfdInMntns, nsfdWithId, sameMntns, stillMounted } from './mount-lookup.js';
import { isMountWatched, mntnsRecordOf, type Registration, Registry } from './registry.js';

export { findViewer, mountAt, stillMounted } from './mount-lookup.js';

/** Half the one second the issue allows between a mount going away and `unmounted` (the polling methods). */
export const MOUNT_POLL_MS = 500;

/** How the broker sees a registration's mount go (docs/walk-rule.md, case 9), best first. */
export type MountWatchMethod = 'fanotify' | 'statmount' | 'mountinfo';

/**
 * The method this kernel gets, from the compat features (each probed once):
 * fanotify needs statmount too (an event is checked with it: a moved mount is
 * detached and attached again), and both need unique mount ids.
 */
export function mountWatchMethod(libc: Libc): MountWatchMethod {
  const compat = kernelCompat(libc);
  if (!compat.has('mnt-id-unique') || !compat.has('statmount-ns')) return 'mountinfo';
  return compat.has('fanotify-mnt') ? 'fanotify' : 'statmount';
}

/** One line per method, for doctor and the docs. */
export const MOUNT_WATCH_METHODS: Record<MountWatchMethod, string> = {
  fanotify: `fanotify FAN_MNT_DETACH on each watched mount namespace (${COMPAT_FEATURES['fanotify-mnt'].what}), each event checked with statmount`,
  statmount: `statmount(2) of each watched mount's unique id in its namespace every ${MOUNT_POLL_MS} ms (${COMPAT_FEATURES['statmount-ns'].what})`,
  mountinfo: `the mountinfo of a process in the mount's namespace every ${MOUNT_POLL_MS} ms (legacy mount id at the mount point)`,
};

interface Watch {
  reg: Registration;
  method: MountWatchMethod;
  /** fanotify, statmount: the mount namespace's 64-bit id (never reused); the mount is reg.mountId, unique. */
  mntNsId: bigint | null;
  /** mountinfo: a process in the mount namespace the mount was made in (the context's init, borrowed, or one of our own). */
  viewer: Pidfd | null;
  own: boolean;
  /** mountinfo: that namespace, to find another viewer when this one exits. */
  mntns: NsIdentity | null;
  /** mountinfo: the mount's line in the viewer's mountinfo: legacy id and mount point. */
  legacyId: number;
  mountpoint: string;
}

/** The fanotify group (its fd: ours, for the marks) and the pump that reads it for the event loop. */
interface Group {
  fd: number;
  pump: ChildProcess;
  stream: MountEventStream;
  /** Namespaces marked, with how many watches each has (a mark lasts until its namespace is freed). */
  marked: Map<bigint, number>;
}

/**
 * Turns a registration `unmounted` once its mount is gone. It watches the
 * registrations made with `--for-pid` and those of network filesystems (the
 * ones kernel-thread routing uses); a tmpfs registered by a tenant is not
 * watched. By kernel (probed once, docs/walk-rule.md case 9):
 * - 6.15+: fanotify mount events on each watched mount namespace (FAN_MNT_DETACH);
 *   each event is checked with statmount, since a moved mount is detached too.
 *   Node cannot wait on the group's fd, so upcall-mount-watch copies its events
 *   to a pipe (native-bindings/mount/mount-watch.c).
 * - 6.11+: statmount of each watched mount's unique id in its namespace, every 500 ms.
 * - older, or a registration with a legacy mount id: the mountinfo of a process in
 *   the mount's namespace, every 500 ms.
 * A namespace-id method knows a mount's namespace by its id, not through a
 * process: a mount whose namespace is freed is gone, whichever process exits.
 * After a restart, the restored registrations are watched again in the mount
 * namespace their records name (`watchRestored`), each checked at once.
 */
@injectable()
export class MountWatcher {
  private readonly watches = new Map<string, Watch>();
  /** fanotify watches by unique mount id. */
  private readonly byMountId = new Map<number, Set<string>>();
  private timer: NodeJS.Timeout | null = null;
  private group: Group | null = null;
  private chosen: MountWatchMethod | null = null;
  private sysBound: MountSyscalls | null = null;
  private readonly log: Logger;

  constructor(
    @inject(Libc) private readonly libc: Libc,
    @inject(Registry) private readonly registry: Registry,
    @inject(ProcessSpawner) private readonly spawner: ProcessSpawner,
    @inject(BrokerConfig) private readonly config: BrokerConfig,
    @inject(LoggerFactory) loggers: LoggerFactory,
    @inject(ProcFs) private readonly proc: ProcFs,
  ) {
    this.log = loggers.get('broker:MountWatcher');
    registry.onRegistered((reg, mounter) => {
      if (isMountWatched(reg)) this.watch(reg, mounter);
    });
  }

  /** The method for registrations with a unique mount id (probed on first use, then kept; a failing group falls back). */
  get method(): MountWatchMethod {
    this.chosen ??= mountWatchMethod(this.libc);
    return this.chosen;
  }

  private get sys(): MountSyscalls {
    this.sysBound ??= mountSyscalls();
    return this.sysBound;
  }

  /** Watch `reg`, whose mount `mounter` saw at registration. A mount it cannot find is not watched. */
  watch(reg: Registration, mounter: Pidfd): void {
    if (this.watches.has(reg.id)) return;
    const method = reg.mountIdKind === 'unique' ? this.method : 'mountinfo';
    if (method === 'mountinfo' || !this.watchById(reg, mounter, method)) this.watchMountinfo(reg, mounter);
  }

  /**
   * After a restart: watch again the restored registrations that were watched when made (`isMountWatched`),
   * each in the mount namespace its record names, and check each at once, so a mount that went while the
   * broker was down turns `unmounted` now. A registration whose namespace cannot be known or seen is left as
   * it is, with an info line saying why (docs/walk-rule.md, case 9, "After a restart"). `learnt`: the records
   * saved before they named their namespace, found in init's namespace now (the caller saves them again).
   */
  watchRestored(regs: readonly Registration[]): { watched: number; unmounted: number; unwatched: number; learnt: Registration[] } {
    const out = { watched: 0, unmounted: 0, unwatched: 0, learnt: [] as Registration[] };
    let index: Map<string, number[]> | null = null;
    const procs = () => (index ??= mntnsIndex());
    for (const reg of regs) {
      if (!isMountWatched(reg) || this.watches.has(reg.id)) continue;
      let reason: string | null;
      try {
        reason = this.restoreOne(reg, procs, out.learnt);
      } catch (err) {
        reason = `cannot look at its mount namespace: ${(err as Error).message}`;
      }
      if (reg.unmounted === true) out.unmounted++;
      else if (this.watches.has(reg.id)) out.watched++;
      else {
        out.unwatched++;
        this.log.info('restored registration not watched for unmount; its state stays as it is', {
          id: reg.id, mountpoint: reg.mountpoint, mountId: reg.mountId, context: reg.context.id, reason: reason ?? 'the mount was not found again',
        });
      }
    }
    return out;
  }

  /** One restored registration: watched, marked unmounted, or a reason why neither. */
  private restoreOne(reg: Registration, procs: () => Map<string, number[]>, learnt: Registration[]): string | null {
    const init = reg.context.namespaces?.init;
    if (init === undefined) return 'context released';
    const rec = reg.mntns;
    if (rec === undefined) {
      // Saved before the record named its namespace: known only when the context's init sees this very mount,
      // which then is in init's namespace. Elsewhere it may be mounted in a namespace we cannot name.
      if (this.seenBy(init, reg) !== true) return 'the record names no mount namespace, and the mount is not in the init\'s';
      const mntns = mntnsRecordOf(this.libc, init);
      if (mntns !== null) {
        reg.mntns = mntns; // so the next restart knows it even once the mount is gone
        learnt.push(reg);
      }
      this.watch(reg, init);
      return null;
    }
    const method = reg.mountIdKind === 'unique' ? this.method : 'mountinfo';
    if (rec.id !== undefined && method !== 'mountinfo') {
      // By the namespace's id: no process is needed (a freed namespace took its mounts with it). The fanotify
      // mark needs an fd of the namespace, from init or a process found in it; without one, statmount polls.
      const nsId = BigInt(rec.id);
      using nsfd = method === 'fanotify' ? nsfdWithId(this.libc, init, nsId) ?? nsfdInMntns(this.libc, rec, nsId, procs()) : null;
      this.watchNsId(reg, nsId, nsfd, method);
      return null;
    }
    // Through a process of the recorded namespace: the context's init when it is there, else one found in /proc.
    const initNs = mntnsOf(init);
    const inInit = initNs !== null && sameNs(initNs, rec);
    using found = inInit ? null : findViewer(this.libc, rec, procs());
    const viewer = inInit ? init : found;
    if (viewer === null) return 'no process left in its mount namespace';
    const seen = this.seenBy(viewer, reg);
    if (seen === undefined) return 'cannot tell whether the mount is still there (another mount covers its mount point, or the viewer exited)';
    if (seen) this.watch(reg, viewer);
    else this.markUnmounted(reg, 'mountinfo', true);
    return null;
  }

  /**
   * Whether `viewer` sees the registered mount at its mount point: true, false (gone from that namespace), or
   * undefined (cannot tell: the viewer exited, another mount covers the mount point, or ids of another kind).
   */
  private seenBy(viewer: Pidfd, reg: Registration): boolean | undefined {
    if (reg.mountIdKind === 'legacy') return this.read(viewer, (t) => stillMounted(t, reg.mountId, reg.mountpoint));
    let top;
    try {
      top = resolveMountOf(this.libc, viewer, reg.mountpoint);
    } catch (err) {
      if (BrokerError.from(err).code !== 'E_NOT_FOUND') return undefined;
      top = null; // no such path there any more
    }
    if (top !== null && top.mountIdKind !== 'unique') return undefined;
    if (top?.mountId === reg.mountId) return true;
    // Not the topmost: gone, unless something is mounted over it (mountinfo shows no unique ids).
    return this.read(viewer, (t) => (mountsAt(t, reg.mountpoint) > 1 ? undefined : false));
  }

  /** fanotify or statmount: by the namespace's id. False when the namespace cannot be named (the caller falls back). */
  private watchById(reg: Registration, mounter: Pidfd, method: 'fanotify' | 'statmount'): boolean {
    let nsId: bigint | null;
    let marked = false;
    try {
      using nsfd = mounter.namespace('mnt');
      nsId = mntNsIdOf(this.libc, nsfd.fd);
      marked = nsId !== null && method === 'fanotify' && this.mark(nsfd.fd, nsId);
    } catch {
      return false; // the mounter has exited: the mountinfo path will not find it either
    }
    if (nsId === null) return false;
    this.addNsWatch(reg, nsId, marked ? 'fanotify' : 'statmount');
    return true;
  }

  /** watchById for a namespace known by its id (a restored record): fanotify when `nsfd` can be marked, else statmount. */
  private watchNsId(reg: Registration, nsId: bigint, nsfd: NamespaceFd | null, method: 'fanotify' | 'statmount'): void {
    this.addNsWatch(reg, nsId, method === 'fanotify' && nsfd !== null && this.mark(nsfd.fd, nsId) ? 'fanotify' : 'statmount');
  }

  /** The watch of `reg.mountId` in `nsId` (marked already for fanotify), checked once at once. */
  private addNsWatch(reg: Registration, nsId: bigint, how: 'fanotify' | 'statmount'): void {
    const w: Watch = { reg, method: how, mntNsId: nsId, viewer: null, own: false, mntns: null, legacyId: 0, mountpoint: reg.mountpoint };
    this.watches.set(reg.id, w);
    if (how === 'fanotify') {
      let ids = this.byMountId.get(reg.mountId);
      if (ids === undefined) this.byMountId.set(reg.mountId, (ids = new Set()));
      ids.add(reg.id);
    } else {
      this.startTimer();
    }
    // An unmount between the registration's statx (or while the broker was down) and the mark sent no event we could see.
    this.checkOne(reg.id, w);
  }

  private watchMountinfo(reg: Registration, mounter: Pidfd): void {
    const init = reg.context.namespaces?.init;
    const viaInit = init !== undefined && sameMntns(mounter, init);
    const viewer = viaInit ? init : this.ownPidfd(mounter);
    if (viewer === null) return;
    // A legacy id is the mount's own (the topmost may be another mount over it, after a restart); a unique one is not in mountinfo.
    const legacyId = this.read(viewer, (text) => reg.mountIdKind === 'legacy'
      ? (stillMounted(text, reg.mountId, reg.mountpoint) ? reg.mountId : null)
      : mountAt(text, reg.mountpoint));
    if (legacyId === null || legacyId === undefined) {
      if (!viaInit) viewer.close();
      return;
    }
    this.watches.set(reg.id, { reg, method: 'mountinfo', mntNsId: null, viewer, own: !viaInit, mntns: mntnsOf(viewer), legacyId, mountpoint: reg.mountpoint });
    this.startTimer();
  }

  /** One poll of the polling methods: every mount still there, or its registration turns `unmounted`. */
  check(): void {
    for (const [id, w] of this.watches) if (w.method !== 'fanotify') this.checkOne(id, w);
  }

  stop(): void {
    for (const [id, w] of this.watches) this.unwatch(id, w);
    this.closeGroup();
  }

  /** How many registrations each method watches now (doctor, tests). */
  counts(): Record<MountWatchMethod, number> {
    const out: Record<MountWatchMethod, number> = { fanotify: 0, statmount: 0, mountinfo: 0 };
    for (const w of this.watches.values()) out[w.method]++;
    return out;
  }

  private checkOne(id: string, w: Watch): void {
    const current = this.registry.find({ id })[0];
    const there = current === w.reg && w.reg.context.namespaces !== null ? this.present(w) : undefined;
    if (there === true) return;
    this.unwatch(id, w);
    if (there === false) {
      this.markUnmounted(w.reg, w.method, false);
    } else {
      const reason = current !== w.reg ? 'unregistered' : w.reg.context.namespaces === null ? 'context released' : 'no process left in the mount namespace';
      this.log.info('mount watch ended; the state stays as it is', { id, method: w.method, reason });
    }
  }

  private markUnmounted(reg: Registration, method: MountWatchMethod, atRestore: boolean): void {
    reg.unmounted = true;
    this.log.audit('unmounted', {
      id: reg.id, mountpoint: reg.mountpoint, mountId: reg.mountId, context: reg.context.id, method, ...(atRestore ? { seen: 'at restore' } : {}),
    });
  }

  /** true: still mounted; false: gone; undefined: nothing more can be known (the watch ends). */
  private present(w: Watch): boolean | undefined {
    if (w.mntNsId !== null) {
      if (this.sys.statmount(BigInt(w.reg.mountId), w.mntNsId, MW.STATMOUNT_SB_BASIC) === 0) return true;
      const errno = this.sys.errno();
      // ENOENT: the mount is not in the namespace, or the namespace is gone (its mounts with it).
      if (errno === MW.ENOENT) return false;
      this.log.warn('statmount failed; the mount is taken to be there', { id: w.reg.id, errno });
      return true;
    }
    let r = this.read(w.viewer!, (t) => stillMounted(t, w.legacyId, w.mountpoint));
    if (r === undefined && w.mntns !== null) {
      // The viewer exited: another process of the namespace can show it.
      if (w.own) w.viewer!.close();
      w.viewer = findViewer(this.libc, w.mntns);
      w.own = true;
      if (w.viewer === null) return undefined;
      r = this.read(w.viewer, (t) => stillMounted(t, w.legacyId, w.mountpoint));
    }
    return r;
  }

  private unwatch(id: string, w: Watch): void {
    this.watches.delete(id);
    if (w.own) w.viewer?.close();
    if (w.method === 'fanotify') {
      const ids = this.byMountId.get(w.reg.mountId);
      ids?.delete(id);
      if (ids?.size === 0) this.byMountId.delete(w.reg.mountId);
      const marked = this.group?.marked;
      const n = marked?.get(w.mntNsId!) ?? 0;
      if (n <= 1) marked?.delete(w.mntNsId!);
      else marked?.set(w.mntNsId!, n - 1);
    }
    if (this.timer && ![...this.watches.values()].some((x) => x.method !== 'fanotify')) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  private startTimer(): void {
    this.timer ??= setInterval(() => this.check(), MOUNT_POLL_MS);
    this.timer.unref();
  }

  /** A FAN_MNT_DETACH mark on the namespace (the group made on first use). False: this watch polls instead. */
  private mark(nsfd: number, nsId: bigint): boolean {
    const g = this.group ?? this.openGroup();
    if (g === null) return false;
    const n = g.marked.get(nsId);
    if (n === undefined && this.sys.fanotifyMark(g.fd, MW.FAN_MARK_ADD | MW.FAN_MARK_MNTNS, MW.FAN_MNT_DETACH, nsfd) < 0) {
      this.log.warn('fanotify_mark on a mount namespace failed; its mounts are polled with statmount', { errno: this.sys.errno() });
      return false;
    }
    g.marked.set(nsId, (n ?? 0) + 1);
    return true;
  }

  /** The group (blocking reads: the pump's) and upcall-mount-watch reading it; null (and statmount from now on) if either fails. */
  private openGroup(): Group | null {
    const fd = this.sys.fanotifyInit(MW.FAN_REPORT_MNT | MW.FAN_CLOEXEC, 0);
    if (fd < 0) {
      this.fallBack(`fanotify_init failed (errno ${this.sys.errno()})`);
      return null;
    }
    let pump: ChildProcess;
    try {
      pump = this.spawner.spawn(join(this.config.nativeDir, 'upcall-mount-watch'), [], { stdio: [fd, 'pipe', 'pipe'] });
    } catch (err) {
      closeSync(fd);
      this.fallBack(`cannot start upcall-mount-watch: ${(err as Error).message}`);
      return null;
    }
    const g: Group = { fd, pump, stream: new MountEventStream(), marked: new Map() };
    this.group = g;
    let stderr = '';
    pump.stderr?.setEncoding('utf8').on('data', (d: string) => { if (stderr.length < 4096) stderr += d; });
    pump.stdout?.on('data', (chunk: Buffer) => {
      if (this.group !== g) return;
      let events: MountEvent[];
      try {
        events = g.stream.push(chunk);
      } catch (err) {
        this.fallBack((err as Error).message);
        return;
      }
      this.onEvents(events);
    });
    pump.once('error', (err) => { if (this.group === g) this.fallBack(`upcall-mount-watch: ${err.message}`); });
    pump.once('exit', (code, signal) => {
      if (this.group === g) this.fallBack(`upcall-mount-watch exited (${signal ?? code}): ${stderr.trim()}`);
    });
    // The broker's life does not hang on the watcher (as with the polling timer).
    pump.unref();
    for (const s of [pump.stdout, pump.stderr]) (s as { unref?: () => void } | null)?.unref?.();
    return g;
  }

  private onEvents(events: MountEvent[]): void {
    for (const ev of events) {
      if ((ev.mask & MW.FAN_Q_OVERFLOW) !== 0) {
        this.log.warn('fanotify queue overflowed; checking every watched mount');
        for (const [id, w] of this.watches) if (w.method === 'fanotify') this.checkOne(id, w);
        continue;
      }
      if ((ev.mask & MW.FAN_MNT_DETACH) === 0) continue;
      for (const mountId of ev.mountIds) {
        for (const id of [...(this.byMountId.get(mountId) ?? [])]) {
          const w = this.watches.get(id);
          if (w) this.checkOne(id, w);
        }
      }
    }
  }

  /** The group failed: its watches poll with statmount from now on, and so do new ones. */
  private fallBack(why: string): void {
    this.log.warn('fanotify mount events unavailable; polling with statmount instead', { why });
    this.chosen = 'statmount';
    this.closeGroup();
    for (const w of this.watches.values()) if (w.method === 'fanotify') w.method = 'statmount';
    this.byMountId.clear();
    if ([...this.watches.values()].some((w) => w.method === 'statmount')) this.startTimer();
  }

  private closeGroup(): void {
    const g = this.group;
    if (g === null) return;
    this.group = null;
    if (g.pump.exitCode === null && g.pump.signalCode === null) g.pump.kill('SIGKILL');
    g.pump.stdout?.destroy();
    g.pump.stderr?.destroy();
    closeSync(g.fd);
  }

  /** `fn` of the viewer's mountinfo; undefined when the viewer has exited (nothing is known then). */
  private read<T>(viewer: Pidfd, fn: (mountinfo: string) => T): T | undefined {
    try {
      const text = this.proc.readText(`${viewer.pid}/mountinfo`);
      return viewer.isAlive() ? fn(text) : undefined;
    } catch {
      return undefined;
    }
  }

  /** A pidfd of our own for the mounter (the caller's is closed after the request), checked to be the same process. */
  private ownPidfd(mounter: Pidfd): Pidfd | null {
    try {
      const p = Pidfd.open(this.libc, mounter.pid);
      if (startTimeOf(p) === startTimeOf(mounter)) return p;
      p.close();
    } catch {
      // the mounter has already exited: nothing to watch through
    }
    return null;
  }
}
