import { readFileSync } from 'node:fs';
import { inject, injectable } from 'inversify';
import { LoggerFactory, type Logger } from '../common/tokens.js';
import { Libc } from '../ns/libc.js';
import type { NsIdentity } from '../ns/namespace-fd.js';
import { Pidfd } from '../ns/pidfd.js';
import { startTimeOf } from '../ns/proc-info.js';
import { type Registration, Registry } from './registry.js';

/** Half the one second the issue allows between a mount going away and `unmounted`. */
export const MOUNT_POLL_MS = 500;

/** Filesystems whose registrations route kernel-thread requests, so their end matters (docs/walk-rule.md, case 6). */
const NETWORK_FS = /^(cifs|smb3|nfs|nfs4|ceph|afs)$/;

interface Watch {
  reg: Registration;
  /** A process in the mount namespace the mount was made in: the context's init (borrowed) or one of our own. */
  viewer: Pidfd;
  own: boolean;
  /** The mount's line in that process's mountinfo: legacy id and mount point. */
  legacyId: number;
  mountpoint: string;
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
 * Turns a registration `unmounted` within a second of its mount going away, by
 * polling the mountinfo of a process in the mount's namespace every 500 ms. It
 * watches the registrations made with `--for-pid` and those of network
 * filesystems (the ones kernel-thread routing uses); a tmpfs registered by a
 * tenant is not watched (thousands of them would cost a read each per poll).
 * fanotify's FAN_MNT_DETACH (Linux 6.15) would replace the polling; not done.
 */
@injectable()
export class MountWatcher {
  private readonly watches = new Map<string, Watch>();
  private timer: NodeJS.Timeout | null = null;
  private readonly log: Logger;

  constructor(
    @inject(Libc) private readonly libc: Libc,
    @inject(Registry) private readonly registry: Registry,
    @inject(LoggerFactory) loggers: LoggerFactory,
  ) {
    this.log = loggers.get('broker:MountWatcher');
    registry.onRegistered((reg, mounter) => {
      if (NETWORK_FS.test(reg.fstype ?? '')) this.watch(reg, mounter);
    });
  }

  /** Watch `reg`, whose mount `mounter` saw at registration. A mount it cannot find is not watched. */
  watch(reg: Registration, mounter: Pidfd): void {
    if (this.watches.has(reg.id)) return;
    const init = reg.context.namespaces?.init;
    const viaInit = init !== undefined && sameMntns(mounter, init);
    const viewer = viaInit ? init : this.ownPidfd(mounter);
    if (viewer === null) return;
    const legacyId = this.read(viewer, (text) => mountAt(text, reg.mountpoint));
    if (legacyId === null || legacyId === undefined) {
      if (!viaInit) viewer.close();
      return;
    }
    this.watches.set(reg.id, { reg, viewer, own: !viaInit, legacyId, mountpoint: reg.mountpoint });
    this.timer ??= setInterval(() => this.check(), MOUNT_POLL_MS);
    this.timer.unref();
  }

  /** One poll: every watched mount still there, or its registration turns `unmounted`. */
  check(): void {
    for (const [id, w] of this.watches) {
      const current = this.registry.find({ id })[0];
      const there = current === w.reg && w.reg.context.namespaces !== null ? this.read(w.viewer, (t) => stillMounted(t, w.legacyId, w.mountpoint)) : undefined;
      if (there === true) continue;
      this.unwatch(id, w);
      if (there === false) {
        w.reg.unmounted = true;
        this.log.audit('unmounted', { id, mountpoint: w.mountpoint, mountId: w.reg.mountId, context: w.reg.context.id });
      }
    }
  }

  stop(): void {
    for (const [id, w] of this.watches) this.unwatch(id, w);
  }

  private unwatch(id: string, w: Watch): void {
    this.watches.delete(id);
    if (w.own) w.viewer.close();
    if (this.watches.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
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

function sameMntns(a: Pidfd, b: Pidfd): boolean {
  try {
    using x = a.namespace('mnt');
    using y = b.namespace('mnt');
    const [i, j]: NsIdentity[] = [x.identity(), y.identity()];
    return i!.dev === j!.dev && i!.ino === j!.ino;
  } catch {
    return false;
  }
}
