/**
 * Kernel features newer than Linux 6.1 (Debian 12), each with a fallback that
 * older kernels can run. Each is probed once per process, on first use, and the
 * answer is kept: the broker never retries a missing ioctl per request.
 *
 * `UB_KERNEL_COMPAT=no-pidfd-ns,no-pidfd-info,...` (or `all`) forces fallbacks on a
 * kernel that has the features, so their paths run in CI on a new kernel too.
 * It is read here once; the C programs (zygote, spawner) read the same variable
 * (native-bindings/context/open.c, ub_compat_has) and get it through compatEnv().
 */
import { closeSync, openSync } from 'node:fs';
import { BrokerError } from '../common/errors.js';
import { K } from './kernel-constants.js';
import type { Libc } from './libc.js';
import { MW, mntNsIdOf, mountSyscalls } from './mount-syscalls.js';

export const KERNEL_COMPAT_ENV = 'UB_KERNEL_COMPAT';

/** The features, with the kernel that brought each and what its fallback costs. */
export const COMPAT_FEATURES = {
  'pidfd-ns': {
    what: 'PIDFD_GET_*_NAMESPACE (Linux 6.11)',
    fallback: 'opens /proc/<pid>/ns/*, then checks the pidfd is still alive',
    cost: 'none known: a process alive after the open held its pid throughout; costs a /proc lookup per namespace',
  },
  'pidfd-info': {
    what: 'PIDFD_GET_INFO (Linux 6.13; PIDFD_INFO_EXIT 6.15)',
    fallback: 'the pid from "Pid:" of /proc/self/fdinfo/<pidfd>; an upcall\'s exit status from the proc connector\'s exit event (root in the initial namespaces), else from field 52 of /proc/<pid>/stat while it is a zombie',
    cost: 'no security cost; without the proc connector (or when its queue overflows on a busy host) an upcall reaped at once by its init reports no exit status (code null), and request-key programs then count as failed',
  },
  peerpidfd: {
    what: 'SO_PEERPIDFD (Linux 6.5)',
    fallback: 'SO_PEERCRED, pidfd_open(pid); the process must have started before the connection was accepted and hold the connection\'s other end (sock_diag, /proc/<pid>/fd)',
    cost: 'residual (docs/security.md): a peer that hands its end of the connection to a process and exits, and whose pid that very process then gets, is taken for it; a client that closes its end before the broker looks is refused',
  },
  'mnt-id-unique': {
    what: 'STATX_MNT_ID_UNIQUE (Linux 6.8)',
    fallback: 'STATX_MNT_ID, the legacy mount id',
    cost: 'a legacy mount id is reused after unmount: a stale registration could name a later mount with the same id',
  },
  'pidns-pid': {
    what: 'NS_GET_PID_FROM_PIDNS (Linux 6.11)',
    fallback: 'finds pid 1 of a pid namespace in /proc (ns/pid and the last NSpid of status), re-checked against the pidfd',
    cost: 'no security cost (every candidate is re-checked through its pidfd); registration scans /proc, slower with many processes',
  },
  'statmount-ns': {
    what: 'statmount(2) in another mount namespace (mnt_id_req.mnt_ns_id) and NS_MNT_GET_INFO (Linux 6.11/6.12)',
    fallback: 'reads the mountinfo of a process in the mount\'s namespace every 500 ms (a mount is its legacy id at its mount point)',
    cost: 'a whole mountinfo read and parsed per watched mount per poll; a mount moved within its namespace reads as unmounted; once no process is left in the namespace, nothing more is known (the registration stays as it was)',
  },
  'fanotify-mnt': {
    what: 'fanotify mount events: FAN_REPORT_MNT, FAN_MARK_MNTNS, FAN_MNT_DETACH (Linux 6.15)',
    fallback: 'statmount(2) of each watched mount\'s unique id in its mount namespace every 500 ms',
    cost: 'an unmount is seen up to 500 ms later, at one statmount call per watched mount per poll',
  },
} as const;
export type CompatFeature = keyof typeof COMPAT_FEATURES;
export const COMPAT_FEATURE_NAMES = Object.keys(COMPAT_FEATURES) as CompatFeature[];

/** `no-pidfd-ns,no-peerpidfd` → the features forced off; `all` forces every fallback. */
export function parseCompatEnv(value: string | undefined): Set<CompatFeature> {
  const out = new Set<CompatFeature>();
  for (const word of (value ?? '').split(',').map((w) => w.trim()).filter(Boolean)) {
    if (word === 'all') {
      COMPAT_FEATURE_NAMES.forEach((f) => out.add(f));
      continue;
    }
    const f = word.replace(/^no-/, '') as CompatFeature;
    if (!word.startsWith('no-') || !(f in COMPAT_FEATURES)) {
      throw new BrokerError('E_CONFIG', `${KERNEL_COMPAT_ENV}: unknown word "${word}" (known: all, ${COMPAT_FEATURE_NAMES.map((n) => `no-${n}`).join(', ')})`);
    }
    out.add(f);
  }
  return out;
}

export type CompatState = 'native' | 'fallback: the kernel lacks it' | `fallback: forced by ${typeof KERNEL_COMPAT_ENV}`;

/** The choice for each feature: forced off, else probed once and remembered. */
export class KernelCompat {
  private readonly known = new Map<CompatFeature, boolean>();

  constructor(private readonly probes: Record<CompatFeature, () => boolean>, readonly forced: ReadonlySet<CompatFeature>) {}

  has(f: CompatFeature): boolean {
    if (this.forced.has(f)) return false;
    let v = this.known.get(f);
    if (v === undefined) {
      v = this.probes[f]();
      this.known.set(f, v);
    }
    return v;
  }

  /** A call found the feature missing after all (a probe cannot see everything): use the fallback from now on. */
  markMissing(f: CompatFeature): void {
    this.known.set(f, false);
  }

  state(f: CompatFeature): CompatState {
    if (this.forced.has(f)) return `fallback: forced by ${KERNEL_COMPAT_ENV}`;
    return this.has(f) ? 'native' : 'fallback: the kernel lacks it';
  }
}

const ENOTTY = 25;
const EINVAL = 22;
const ENOPROTOOPT = 92;

/** An ioctl or sockopt the kernel does not know fails with one of these; anything else means it exists. */
function unknownRequest(errno: number): boolean {
  return errno === ENOTTY || errno === EINVAL || errno === ENOPROTOOPT;
}

/** Run `fn` on a pidfd of this process, closed afterwards; null if pidfd_open itself fails. */
function withSelfPidfd<T>(libc: Libc, fn: (fd: number) => T): T {
  const fd = libc.pidfdOpen(process.pid, 0);
  if (fd < 0) throw new BrokerError('E_NO_KERNEL_FEATURE', 'pidfd_open(self) failed: the broker needs pidfds (Linux 5.3)');
  try {
    return fn(fd);
  } finally {
    closeSync(fd);
  }
}

/** The real probes, each one syscall or two against this process. */
export function kernelProbes(libc: Libc): Record<CompatFeature, () => boolean> {
  const supported = (r: number) => {
    if (r >= 0) return true;
    return !unknownRequest(libc.errno());
  };
  return {
    'pidfd-ns': () => withSelfPidfd(libc, (fd) => {
      const ns = libc.ioctl(fd, K.UB_PIDFD_GET_PID_NAMESPACE);
      if (ns >= 0) closeSync(ns);
      return supported(ns);
    }),
    'pidfd-info': () => withSelfPidfd(libc, (fd) => {
      const buf = Buffer.alloc(64);
      buf.writeBigUInt64LE(BigInt(K.UB_PIDFD_INFO_PID), 0);
      return supported(libc.ioctlPtr(fd, K.UB_PIDFD_GET_INFO, buf));
    }),
    // An unconnected socket answers ENODATA where SO_PEERPIDFD exists, ENOPROTOOPT where not.
    peerpidfd: () => {
      const fd = libc.unixDgramSocket();
      if (fd < 0) return true; // cannot tell: try the real call, which marks it missing if need be
      try {
        return supported(libc.getsockopt(fd, K.UB_SOL_SOCKET, K.UB_SO_PEERPIDFD, Buffer.alloc(4)));
      } finally {
        closeSync(fd);
      }
    },
    // statx leaves a mask bit it does not know unset in stx_mask.
    'mnt-id-unique': () => {
      const buf = Buffer.alloc(256);
      if (libc.statx(K.UB_AT_FDCWD, '/', 0, K.UB_STATX_MNT_ID_UNIQUE, buf) < 0) return false;
      return (buf.readUInt32LE(0) & K.UB_STATX_MNT_ID_UNIQUE) !== 0;
    },
    'pidns-pid': () => withOwnNs('pid', (fd) => supported(libc.ioctlInt(fd, K.UB_NS_GET_PID_FROM_PIDNS, process.pid))),
    // Our own root mount, by its unique id, in our own namespace named by its id.
    'statmount-ns': () => withOwnNs('mnt', (nsfd) => {
      const nsId = mntNsIdOf(libc, nsfd);
      const buf = Buffer.alloc(256);
      if (nsId === null || libc.statx(K.UB_AT_FDCWD, '/', 0, K.UB_STATX_MNT_ID_UNIQUE, buf) < 0) return false;
      if ((buf.readUInt32LE(0) & K.UB_STATX_MNT_ID_UNIQUE) === 0) return false;
      return mountSyscalls().statmount(buf.readBigUInt64LE(144), nsId, MW.STATMOUNT_SB_BASIC) === 0;
    }),
    // A group that reports mounts (EINVAL before 6.15), marked on our own mount namespace.
    'fanotify-mnt': () => withOwnNs('mnt', (nsfd) => {
      const sys = mountSyscalls();
      const fan = sys.fanotifyInit(MW.FAN_REPORT_MNT | MW.FAN_CLOEXEC | MW.FAN_NONBLOCK, 0);
      if (fan < 0) return false;
      try {
        return sys.fanotifyMark(fan, MW.FAN_MARK_ADD | MW.FAN_MARK_MNTNS, MW.FAN_MNT_DETACH, nsfd) === 0;
      } finally {
        closeSync(fan);
      }
    }),
  };
}

/** `fn` of an fd of this process's namespace of `kind`, closed afterwards. */
function withOwnNs(kind: 'pid' | 'mnt', fn: (nsfd: number) => boolean): boolean {
  const fd = openSync(`/proc/self/ns/${kind}`, 'r');
  try {
    return fn(fd);
  } finally {
    closeSync(fd);
  }
}

const perLibc = new WeakMap<Libc, KernelCompat>();

/** The one KernelCompat of this process for this libc (a fake libc in a unit test gets its own). */
export function kernelCompat(libc: Libc): KernelCompat {
  let c = perLibc.get(libc);
  if (c === undefined) {
    c = new KernelCompat(kernelProbes(libc), parseCompatEnv(process.env[KERNEL_COMPAT_ENV]));
    perLibc.set(libc, c);
  }
  return c;
}

/** The environment the native programs need to make the same forced choices (empty when nothing is forced). */
export function compatEnv(): Record<string, string> {
  const v = process.env[KERNEL_COMPAT_ENV];
  return v ? { [KERNEL_COMPAT_ENV]: v } : {};
}
