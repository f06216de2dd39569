import { existsSync, fstatSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { BrokerError, errnoError } from '../common/errors.js';
import { kernelCompat } from './kernel-compat.js';
import { K, type NsType, nsTypeFromCloneFlag } from './kernel-constants.js';
import type { Libc } from './libc.js';
import { OwnedFd } from './owned-fd.js';

/** A namespace is identified by the (st_dev, st_ino) of its nsfs inode. */
export interface NsIdentity {
  dev: number;
  ino: number;
}

export function sameNs(a: NsIdentity, b: NsIdentity): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/** An owned fd to a namespace (nsfs), with the NS_GET_* ioctls of ioctl_ns(2). */
export class NamespaceFd extends OwnedFd {
  constructor(fd: number, private readonly libc: Libc) {
    super(fd);
  }

  identity(): NsIdentity {
    const st = fstatSync(this.fd);
    return { dev: st.dev, ino: st.ino };
  }

  type(): NsType {
    const flag = this.libc.ioctl(this.fd, K.UB_NS_GET_NSTYPE);
    if (flag < 0) throw errnoError('ioctl(NS_GET_NSTYPE)', this.libc.errno(), 'namespace type');
    const t = nsTypeFromCloneFlag(flag);
    if (t === null) throw new BrokerError('E_INTERNAL', `unknown namespace type flag 0x${flag.toString(16)}`);
    return t;
  }

  /** The user namespace that owns this namespace (NS_GET_USERNS). */
  owner(): NamespaceFd {
    return this.related(K.UB_NS_GET_USERNS, 'NS_GET_USERNS');
  }

  /**
   * The parent of a pid or user namespace (NS_GET_PARENT), or null at the top of
   * what the caller may see: the kernel answers EPERM when the parent lies outside
   * the caller's own namespace tree.
   */
  parent(): NamespaceFd | null {
    const fd = this.libc.ioctl(this.fd, K.UB_NS_GET_PARENT);
    if (fd >= 0) return new NamespaceFd(fd, this.libc);
    const errno = this.libc.errno();
    if (errno === 1 /* EPERM */) return null;
    throw errnoError('ioctl(NS_GET_PARENT)', errno, 'parent namespace');
  }

  /** The uid (in the caller's user namespace) of the creator of this user namespace. */
  ownerUid(): number {
    const buf = Buffer.alloc(4);
    if (this.libc.ioctlPtr(this.fd, K.UB_NS_GET_OWNER_UID, buf) < 0) {
      throw errnoError('ioctl(NS_GET_OWNER_UID)', this.libc.errno(), 'user namespace owner uid');
    }
    return buf.readUInt32LE(0);
  }

  /**
   * Translate `pid` as seen inside this pid namespace to the pid the broker sees
   * (NS_GET_PID_FROM_PIDNS, Linux 6.11). `pidFromPidns(1)` is the namespace's init.
   * Throws E_NO_PROCESS when no such process exists (ESRCH).
   *
   * Before 6.11 the answer comes from /proc (pidInProc): `hints` are host pids
   * tried first (the init a caller expects, the mounter). Either way the caller
   * opens a pidfd and checks it, as it must for the ioctl's answer too.
   */
  pidFromPidns(pid: number, hints: readonly number[] = []): number {
    if (!kernelCompat(this.libc).has('pidns-pid')) return pidInProc(this.identity(), pid, hints);
    const r = this.libc.ioctlInt(this.fd, K.UB_NS_GET_PID_FROM_PIDNS, pid);
    if (r < 0) throw errnoError('ioctl(NS_GET_PID_FROM_PIDNS)', this.libc.errno(), `pid ${pid} of pid namespace`);
    return r;
  }

  /** The reverse: a pid the broker sees, as seen inside this pid namespace (NS_GET_PID_IN_PIDNS). */
  pidInPidns(pid: number): number {
    const r = this.libc.ioctlInt(this.fd, K.UB_NS_GET_PID_IN_PIDNS, pid);
    if (r < 0) throw errnoError('ioctl(NS_GET_PID_IN_PIDNS)', this.libc.errno(), `pid ${pid} in pid namespace`);
    return r;
  }

  private related(request: number, name: string): NamespaceFd {
    const fd = this.libc.ioctl(this.fd, request);
    if (fd < 0) throw errnoError(`ioctl(${name})`, this.libc.errno(), 'related namespace');
    return new NamespaceFd(fd, this.libc);
  }
}

/**
 * The host pid of the process numbered `pid` inside the pid namespace `ns`:
 * one whose /proc/<p>/ns/pid is `ns` and whose last NSpid (its number in its
 * own pid namespace) is `pid`. Tries `hints` and their ancestors (an init is
 * usually an ancestor of the mounter), then every process. In the broker's own
 * pid namespace `pid` is the answer, if that process exists.
 */
export function pidInProc(ns: NsIdentity, pid: number, hints: readonly number[] = []): number {
  if (isOwnPidns(ns)) {
    // Our own pid namespace numbers its processes as we do: the ioctl answers `pid` itself
    // whenever it exists, and so must this, without reading the process's ns links (pid 1's
    // are closed to root on some machines: EACCES, which would read as "no such process").
    if (Number.isInteger(pid) && pid > 0 && existsSync(`/proc/${pid}`)) return pid;
    throw noProcess(ns, pid);
  }
  const seen = new Set<number>();
  const tryPid = (p: number): boolean => {
    if (seen.has(p)) return false;
    seen.add(p);
    try {
      const st = statSync(`/proc/${p}/ns/pid`);
      if (st.dev !== ns.dev || st.ino !== ns.ino) return false;
      const nspid = /^NSpid:\s*(.*)$/m.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1]?.trim().split(/\s+/);
      return nspid !== undefined && Number(nspid.at(-1)) === pid;
    } catch {
      return false; // gone, or not ours to read
    }
  };
  for (const h of hints) {
    for (let p = h, steps = 0; p > 1 && steps < 64; p = parentOf(p), steps++) if (tryPid(p)) return p;
  }
  for (const name of readdirSync('/proc')) {
    const p = Number(name);
    if (Number.isInteger(p) && p > 0 && tryPid(p)) return p;
  }
  throw noProcess(ns, pid);
}

function noProcess(ns: NsIdentity, pid: number): BrokerError {
  return new BrokerError('E_NO_PROCESS', `no process ${pid} in pid namespace ${ns.ino}`, { errnoName: 'ESRCH' });
}

function isOwnPidns(ns: NsIdentity): boolean {
  const own = statSync('/proc/self/ns/pid');
  return sameNs({ dev: own.dev, ino: own.ino }, ns);
}

function parentOf(pid: number): number {
  try {
    return Number(/^PPid:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}
