/**
 * The native surface: the handful of libc calls the broker makes in-process,
 * declared once over koffi. Everything else in src/ns talks to the `Libc`
 * interface, so unit tests can bind a fake. Namespace *entry* is not here:
 * setns into user/mnt namespaces fails in a multi-threaded process (setns(2)),
 * so it lives in the C spawner.
 */
import { createRequire } from 'node:module';

export const Libc = Symbol('Libc');
export interface Libc {
  /** Each call returns the raw result; on -1, `errno()` holds the reason. */
  pidfdOpen(pid: number, flags: number): number;
  /** pidfd_send_signal(2): a signal to the process a pidfd names, never to a reused pid. */
  pidfdSendSignal(pidfd: number, signal: number, flags: number): number;
  ioctl(fd: number, request: number): number;
  ioctlInt(fd: number, request: number, arg: number): number;
  ioctlPtr(fd: number, request: number, buf: Buffer): number;
  getsockopt(fd: number, level: number, name: number, buf: Buffer): number;
  poll(fds: Buffer, nfds: number, timeoutMs: number): number;
  /** openat2(2) with a 24-byte struct open_how. */
  openat2(dirfd: number, path: string, how: Buffer): number;
  statx(dirfd: number, path: string, flags: number, mask: number, buf: Buffer): number;
  /** A close-on-exec AF_UNIX datagram socket (sd_notify: Node has no unix datagram sockets). */
  unixDgramSocket(): number;
  /**
   * A close-on-exec AF_UNIX stream socketpair: its two fds (native-endian
   * int32s) into `sv`, 8 bytes (the DNS relay's stdin and stdout, straight
   * to the broker: ZygoteRunner's socket sessions).
   */
  unixStreamPair(sv: Buffer): number;
  /** A close-on-exec AF_NETLINK datagram socket of `protocol` (sock_diag: a unix socket's peer). */
  netlinkSocket(protocol: number): number;
  /** setns(2) of the calling thread; only CLONE_NEWNET is used (a multi-threaded process may change it). */
  setns(fd: number, nstype: number): number;
  recv(fd: number, buf: Buffer): number;
  /** fcntl(F_DUPFD_CLOEXEC): a second fd for the same open file (the zygote's copy of a held pidfd). */
  dupCloexec(fd: number): number;
  sendto(fd: number, data: Buffer, addr: Buffer): number;
  errno(): number;
}

interface KoffiModule {
  load(path: string): { func(decl: string): (...args: unknown[]) => unknown };
  errno(): number;
}

let opened: { koffi: KoffiModule; lib: ReturnType<KoffiModule['load']> } | undefined;

/** koffi and libc, loaded once; on failure say every path tried (node-pty's loader does the same). */
function openLibc(): { koffi: KoffiModule; lib: ReturnType<KoffiModule['load']> } {
  if (opened) return opened;
  const require = createRequire(import.meta.url);
  let koffi: KoffiModule;
  try {
    koffi = require('koffi') as KoffiModule;
  } catch (err) {
    throw new Error(`cannot load koffi (npm ci installs it): ${(err as Error).message}`);
  }
  const tried: string[] = [];
  for (const path of ['libc.so.6', '/lib/x86_64-linux-gnu/libc.so.6', '/lib64/libc.so.6']) {
    try {
      opened = { koffi, lib: koffi.load(path) };
      return opened;
    } catch (err) {
      tried.push(`${path}: ${(err as Error).message}`);
    }
  }
  throw new Error(`cannot load libc; tried:\n  ${tried.join('\n  ')}`);
}

/** The broker's libc calls (the Libc interface). */
export function loadLibc(): Libc {
  const { koffi, lib } = openLibc();
  return bind(koffi, lib);
}

/**
 * One more libc function by its C declaration, outside the Libc interface: for
 * process-wide knobs set once, before the container exists (src/platform/malloc-arenas.ts).
 */
export function libcFunction(decl: string): (...args: unknown[]) => unknown {
  return openLibc().lib.func(decl);
}

function bind(koffi: KoffiModule, lib: ReturnType<KoffiModule['load']>): Libc {
  const syscall = lib.func('long syscall(long nr, ...)');
  const ioctl = lib.func('int ioctl(int fd, unsigned long request, ...)');
  const getsockopt = lib.func('int getsockopt(int fd, int level, int name, _Inout_ uint8_t *val, _Inout_ uint32_t *len)');
  const poll = lib.func('int poll(_Inout_ uint8_t *fds, unsigned long nfds, int timeout)');
  const socket = lib.func('int socket(int domain, int type, int protocol)');
  const socketpair = lib.func('int socketpair(int domain, int type, int protocol, _Out_ uint8_t *sv)');
  const setns = lib.func('int setns(int fd, int nstype)');
  const fcntl = lib.func('int fcntl(int fd, int cmd, ...)');
  const recv = lib.func('long recv(int fd, _Out_ uint8_t *buf, unsigned long len, int flags)');
  const sendto = lib.func('long sendto(int fd, const uint8_t *buf, unsigned long len, int flags, const uint8_t *addr, unsigned int addrlen)');
  const statx = lib.func('int statx(int dirfd, const char *path, int flags, unsigned int mask, _Inout_ uint8_t *buf)');
  const PIDFD_OPEN = 434; // UB_NR_pidfd_open
  const PIDFD_SEND_SIGNAL = 424; // UB_NR_pidfd_send_signal (K in kernel-constants.ts)
  const OPENAT2 = 437; // UB_NR_openat2
  return {
    pidfdOpen: (pid, flags) => Number(syscall(PIDFD_OPEN, 'int', pid, 'unsigned int', flags)),
    pidfdSendSignal: (pidfd, sig, flags) => Number(syscall(PIDFD_SEND_SIGNAL, 'int', pidfd, 'int', sig, 'void *', null, 'unsigned int', flags)),
    // The third argument must be 0 where the request takes none: pidfs answers EINVAL otherwise.
    ioctl: (fd, req) => ioctl(fd, req, 'long', 0) as number,
    ioctlInt: (fd, req, arg) => ioctl(fd, req, 'long', arg) as number,
    ioctlPtr: (fd, req, buf) => ioctl(fd, req, 'uint8_t *', buf) as number,
    getsockopt: (fd, level, name, buf) => {
      const len = [buf.length];
      return getsockopt(fd, level, name, buf, len) as number;
    },
    poll: (fds, nfds, timeout) => poll(fds, nfds, timeout) as number,
    openat2: (dirfd, path, how) => Number(syscall(OPENAT2, 'int', dirfd, 'const char *', path, 'uint8_t *', how, 'size_t', how.length)),
    statx: (dirfd, path, flags, mask, buf) => statx(dirfd, path, flags, mask, buf) as number,
    unixDgramSocket: () => socket(1 /* AF_UNIX */, 2 | 0x80000 /* SOCK_DGRAM | SOCK_CLOEXEC */, 0) as number,
    unixStreamPair: (sv) => socketpair(1 /* AF_UNIX */, 1 | 0x80000 /* SOCK_STREAM | SOCK_CLOEXEC */, 0, sv) as number,
    netlinkSocket: (protocol) => socket(16 /* AF_NETLINK */, 2 | 0x80000 /* SOCK_DGRAM | SOCK_CLOEXEC */, protocol) as number,
    setns: (fd, nstype) => setns(fd, nstype) as number,
    recv: (fd, buf) => Number(recv(fd, buf, buf.length, 0)),
    dupCloexec: (fd) => fcntl(fd, 1030 /* F_DUPFD_CLOEXEC */, 'int', 3) as number,
    sendto: (fd, data, addr) => Number(sendto(fd, data, data.length, 0x4000 /* MSG_NOSIGNAL */, addr, addr.length)),
    errno: () => koffi.errno(),
  };
}
