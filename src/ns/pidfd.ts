import { openSync, readFileSync } from 'node:fs';
import { BrokerError, errnoError } from '../common/errors.js';
import { kernelCompat } from './kernel-compat.js';
import { K, NS_TYPES, PIDFD_GET_NS, type NsType, type PidfdNsKind } from './kernel-constants.js';
import type { Libc } from './libc.js';
import { NamespaceFd, type NsIdentity } from './namespace-fd.js';
import { OwnedFd } from './owned-fd.js';

const POLLIN = 0x1;

/** What PIDFD_GET_INFO reports (struct pidfd_info, v0 layout, 64 bytes). */
export interface PidfdInfo {
  pid: number;
  tgid: number;
  ppid: number;
  ruid: number;
  rgid: number;
  euid: number;
  egid: number;
  /** Present once the process has exited and been reaped (PIDFD_INFO_EXIT, Linux 6.15). */
  exitCode: number | null;
}

/**
 * An owned pidfd. A pidfd names one process for its whole life: unlike a pid it
 * is never reused, which is what makes every check the broker does race-free.
 */
export class Pidfd extends OwnedFd {
  constructor(fd: number, private readonly libc: Libc, readonly pid: number) {
    super(fd);
  }

  /** pidfd_open(2). Throws E_NO_PROCESS when the pid does not exist. */
  static open(libc: Libc, pid: number): Pidfd {
    const fd = libc.pidfdOpen(pid, 0);
    if (fd < 0) throw errnoError('pidfd_open', libc.errno(), `process ${pid}`);
    return new Pidfd(fd, libc, pid);
  }

  /**
   * An fd for one of the process's namespaces: PIDFD_GET_*_NAMESPACE (Linux 6.11),
   * else /proc/<pid>/ns/<kind> (same names, `pid_for_children` included).
   */
  namespace(kind: PidfdNsKind): NamespaceFd {
    if (!kernelCompat(this.libc).has('pidfd-ns')) return this.procNamespace(kind);
    const fd = this.libc.ioctl(this.fd, PIDFD_GET_NS[kind]);
    if (fd < 0) throw errnoError(`ioctl(PIDFD_GET_${kind.toUpperCase()}_NAMESPACE)`, this.libc.errno(), `namespace of process ${this.pid}`);
    return new NamespaceFd(fd, this.libc);
  }

  /**
   * The fallback before 6.11: the file is opened by pid, so it is this process's
   * only if the process still lives after the open (a live process keeps its pid;
   * a pidfd's process never comes back). Node opens with O_CLOEXEC (libuv).
   */
  private procNamespace(kind: PidfdNsKind): NamespaceFd {
    let fd: number;
    try {
      fd = openSync(`/proc/${this.pid}/ns/${kind}`, 'r');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ESRCH') throw new BrokerError('E_NO_PROCESS', `process ${this.pid} exited`, { errnoName: code });
      throw BrokerError.from(err);
    }
    const ns = new NamespaceFd(fd, this.libc);
    if (!this.isAlive()) {
      ns.close();
      throw new BrokerError('E_NO_PROCESS', `process ${this.pid} exited (after opening its ${kind} namespace)`);
    }
    return ns;
  }

  /** The identities of all eight namespaces; each ns fd is closed before returning. */
  namespaceIdentities(): Record<NsType, NsIdentity> {
    const out = {} as Record<NsType, NsIdentity>;
    for (const t of NS_TYPES) {
      using ns = this.namespace(t);
      out[t] = ns.identity();
    }
    return out;
  }

  /** A second pidfd for the same process (F_DUPFD_CLOEXEC), owned by the caller. */
  dup(): Pidfd {
    const fd = this.libc.dupCloexec(this.fd);
    if (fd < 0) throw errnoError('fcntl(F_DUPFD_CLOEXEC)', this.libc.errno(), `pidfd of process ${this.pid}`);
    return new Pidfd(fd, this.libc, this.pid);
  }

  /** True while the process runs: a pidfd polls readable once the process has exited. */
  isAlive(): boolean {
    return pollExited(this.libc, [this.fd])[0] !== true;
  }

  /** PIDFD_GET_INFO (6.13), else /proc: the pid from fdinfo, the rest from status (no exit code). */
  info(): PidfdInfo {
    if (!kernelCompat(this.libc).has('pidfd-info')) return this.procInfo();
    const buf = Buffer.alloc(64);
    buf.writeBigUInt64LE(BigInt(K.UB_PIDFD_INFO_PID | K.UB_PIDFD_INFO_CREDS | K.UB_PIDFD_INFO_EXIT), 0);
    if (this.libc.ioctlPtr(this.fd, K.UB_PIDFD_GET_INFO, buf) < 0) {
      throw errnoError('ioctl(PIDFD_GET_INFO)', this.libc.errno(), `process ${this.pid}`);
    }
    const mask = Number(buf.readBigUInt64LE(0));
    const u32 = (off: number) => buf.readUInt32LE(off);
    return {
      pid: u32(16), tgid: u32(20), ppid: u32(24), ruid: u32(28), rgid: u32(32), euid: u32(36), egid: u32(40),
      exitCode: (mask & K.UB_PIDFD_INFO_EXIT) !== 0 ? buf.readInt32LE(60) : null,
    };
  }

  private procInfo(): PidfdInfo {
    const pid = pidOfPidfd(this.fd);
    let status: string;
    try {
      status = readFileSync(`/proc/${pid}/status`, 'utf8');
    } catch {
      throw new BrokerError('E_NO_PROCESS', `process ${pid} exited`);
    }
    if (!this.isAlive()) throw new BrokerError('E_NO_PROCESS', `process ${pid} exited`);
    const field = (key: string) => new RegExp(`^${key}:\\s*(\\d+)`, 'm').exec(status)?.[1];
    const uid = idsOf(status, 'Uid');
    const gid = idsOf(status, 'Gid');
    return {
      pid, tgid: Number(field('Tgid') ?? pid), ppid: Number(field('PPid') ?? 0),
      ruid: uid[0]!, rgid: gid[0]!, euid: uid[1]!, egid: gid[1]!, exitCode: null,
    };
  }
}

function idsOf(status: string, key: 'Uid' | 'Gid'): number[] {
  const m = new RegExp(`^${key}:\\s*(\\d+)\\s+(\\d+)`, 'm').exec(status);
  return m ? [Number(m[1]), Number(m[2])] : [-1, -1];
}

/**
 * The pid a pidfd names, from "Pid:" of /proc/self/fdinfo/<fd> (there since
 * Linux 5.3); -1 there means the process has been reaped. Numbered in the pid
 * namespace of our /proc, the broker's own.
 */
export function pidOfPidfd(fd: number): number {
  let text: string;
  try {
    text = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  } catch (err) {
    throw BrokerError.from(err);
  }
  const m = /^Pid:\s*(-?\d+)$/m.exec(text);
  if (m === null) throw new BrokerError('E_INTERNAL', `fd ${fd} is not a pidfd (no Pid: in its fdinfo)`);
  const pid = Number(m[1]);
  if (pid <= 0) throw new BrokerError('E_NO_PROCESS', `the process of pidfd ${fd} has exited`);
  return pid;
}

/**
 * Poll many pidfds at once without blocking; `true` at index i means fds[i]'s
 * process has exited. One syscall for every held context: cheap enough to run often.
 */
export function pollExited(libc: Libc, fds: readonly number[]): boolean[] {
  if (fds.length === 0) return [];
  const buf = Buffer.alloc(8 * fds.length);
  fds.forEach((fd, i) => {
    buf.writeInt32LE(fd, 8 * i);
    buf.writeInt16LE(POLLIN, 8 * i + 4);
  });
  // A zero-timeout poll can still be interrupted by a signal (SIGCHLD arrives often in the
  // broker): EINTR means "ask again", never "failed".
  for (let tries = 0; libc.poll(buf, fds.length, 0) < 0; tries++) {
    const errno = libc.errno();
    if (errno !== 4 /* EINTR */ || tries >= 100) throw errnoError('poll', errno, 'pidfd liveness');
  }
  return fds.map((_, i) => (buf.readInt16LE(8 * i + 6) & POLLIN) !== 0);
}
