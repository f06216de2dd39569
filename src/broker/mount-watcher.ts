import type { ChildProcess } from 'node:child_process';
import { closeSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { inject, injectable } from 'inversify';
import { BrokerConfig, LoggerFactory, ProcessSpawner, type Logger } from '../common/tokens.js';
import { COMPAT_FEATURES, kernelCompat } from '../ns/kernel-compat.js';
import { Libc } from '../ns/libc.js';
import { MW, mntNsIdOf, type MountSyscalls, mountSyscalls } from '../ns/mount-syscalls.js';
import { type NsIdentity, sameNs } from '../ns/namespace-fd.js';
import { Pidfd } from '../ns/pidfd.js';
import { startTimeOf } from '../ns/proc-info.js';
import { MountEventStream, type MountEvent } from './mount-watch-events.js';
import { type Registration, Registry } from './registry.js';

/** Half the one second the issue allows between a mount going away and `unmounted` (the polling methods). */
export const MOUNT_POLL_MS = 500;

/** Filesystems whose registrations route kernel-thread requests, so their end matters (docs/walk-rule.md, case 6). */
const NETWORK_FS = /^(cifs|smb3|nfs|nfs4|ceph|afs)$/;

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

/** mountinfo(5) escapes space, tab, newline and backslash in paths as octal. */
const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));

/** The topmost mount at `mountpoint` in a mountinfo text: its legacy id, or null. */
export function mountAt(mountinfo: string, mountpoint: string): number | null {
  let found: number | null = null;
  for (const line of mountinfo.split('\n')) {
    const f = line.split(' ');
    if (f.length > 4 && unescape(f[4]!) === mountpoint) found = Number(f[0]);
  }
  return found;
}

/** Whether the mount `legacyId` is still at `mountpoint`. */
export function stillMounted(mountinfo: string, legacyId: number, mountpoint: string): boolean {
  const prefix = `${legacyId} `;
  return mountinfo.split('\n').some((line) => line.startsWith(prefix) && unescape(line.split(' ')[4] ?? '') === mountpoint);
}

/**
 * Turns a registration `unmounted` once its mount is gone. It watches the
 * registrations made with `--for-pid` and those of network filesystems (the
 * ones kernel-thread routing uses); a tmpfs registered by a tenant is not
 * watched. By kernel (probed once, docs/walk-rule.md case 9):
 * - 6.15+: fanotify mount events on each watched mount namespace (FAN_MNT_DETACH);
 *   each event is checked with statmount, since a moved mount is detached too.
 *   Node cannot wait on the group's fd, so upcall-mount-watch copies its events
 *   to a pipe (native-bindings/mount-watch.c).
 * - 6.11+: statmount of each watched mount's unique id in its namespace, every 500 ms.
 * - older, or a registration with a legacy mount id: the mountinfo of a process in
 *   the mount's namespace, every 500 ms.
 * A namespace-id method knows a mount's namespace by its id, not through a
 * process: a mount whose namespace is freed is gone, whichever process exits.
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
  ) {
    this.log = loggers.get('broker:MountWatcher');
    registry.onRegistered((reg, mounter) => {
      if (NETWORK_FS.test(reg.fstype ?? '')) this.watch(reg, mounter);
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

  /** fanotify or statmount: by the namespace's id. False when the namespace cannot be named (the caller falls back). */
  private watchById(reg: Registration, mounter: Pidfd, method: 'fanotify' | 'statmount'): boolean {
    let nsId: bigint | null;
    let how: MountWatchMethod = method;
    try {
      using nsfd = mounter.namespace('mnt');
      nsId = mntNsIdOf(this.libc, nsfd.fd);
      if (nsId !== null && how === 'fanotify' && !this.mark(nsfd.fd, nsId)) how = 'statmount';
    } catch {
      return false; // the mounter has exited: the mountinfo path will not find it either
    }
    if (nsId === null) return false;
    const w: Watch = { reg, method: how, mntNsId: nsId, viewer: null, own: false, mntns: null, legacyId: 0, mountpoint: reg.mountpoint };
    this.watches.set(reg.id, w);
    if (how === 'fanotify') {
      let ids = this.byMountId.get(reg.mountId);
      if (ids === undefined) this.byMountId.set(reg.mountId, (ids = new Set()));
      ids.add(reg.id);
    } else {
      this.startTimer();
    }
    // An unmount between the registration's statx and the mark sent no event we could see.
    this.checkOne(reg.id, w);
    return true;
  }

  private watchMountinfo(reg: Registration, mounter: Pidfd): void {
    const init = reg.context.namespaces?.init;
    const viaInit = init !== undefined && sameMntns(mounter, init);
    const viewer = viaInit ? init : this.ownPidfd(mounter);
    if (viewer === null) return;
    const legacyId = this.read(viewer, (text) => mountAt(text, reg.mountpoint));
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
      w.reg.unmounted = true;
      this.log.audit('unmounted', { id, mountpoint: w.mountpoint, mountId: w.reg.mountId, context: w.reg.context.id, method: w.method });
    } else {
      const reason = current !== w.reg ? 'unregistered' : w.reg.context.namespaces === null ? 'context released' : 'no process left in the mount namespace';
      this.log.info('mount watch ended; the state stays as it is', { id, method: w.method, reason });
    }
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
      const text = readFileSync(`/proc/${viewer.pid}/mountinfo`, 'utf8');
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

function mntnsOf(p: Pidfd): NsIdentity | null {
  try {
    using ns = p.namespace('mnt');
    return ns.identity();
  } catch {
    return null;
  }
}

function sameMntns(a: Pidfd, b: Pidfd): boolean {
  const [i, j] = [mntnsOf(a), mntnsOf(b)];
  return i !== null && j !== null && sameNs(i, j);
}

/** Some live process in the mount namespace `ns` (a /proc scan, re-checked through its pidfd), or null. */
export function findViewer(libc: Libc, ns: NsIdentity): Pidfd | null {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const st = statSync(`/proc/${name}/ns/mnt`);
      if (st.dev !== ns.dev || st.ino !== ns.ino) continue;
      const p = Pidfd.open(libc, Number(name));
      const seen = mntnsOf(p);
      if (seen !== null && sameNs(seen, ns)) return p;
      p.close();
    } catch {
      // gone meanwhile, or not ours to see
    }
  }
  return null;
}
