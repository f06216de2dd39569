import type { Socket } from 'node:net';
import { BrokerError, errnoError } from '../common/errors.js';
import { readFileSync } from 'node:fs';
import { kernelCompat } from './kernel-compat.js';
import { K } from './kernel-constants.js';
import type { Libc } from './libc.js';
import { Pidfd } from './pidfd.js';
import { startTimeOf } from './proc-info.js';
import { holdsSocket, unixPeerInode } from './unix-peer.js';

const ENOPROTOOPT = 92;

/** SO_PEERCRED: the peer's pid/uid/gid as the kernel recorded them at connect(), in our namespaces. */
export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
}

/** The fd number behind a connected Node UNIX socket (libuv's pipe handle). */
export function socketFd(socket: Socket): number {
  const handle = (socket as unknown as { _handle?: { fd?: number } })._handle;
  const fd = handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new BrokerError('E_INTERNAL', 'socket has no file descriptor');
  return fd;
}

export function peerCred(libc: Libc, fd: number): PeerCred {
  const buf = Buffer.alloc(12);
  if (libc.getsockopt(fd, K.UB_SOL_SOCKET, K.UB_SO_PEERCRED, buf) < 0) {
    throw errnoError('getsockopt(SO_PEERCRED)', libc.errno(), 'socket peer credentials');
  }
  return { pid: buf.readInt32LE(0), uid: buf.readUInt32LE(4), gid: buf.readUInt32LE(8) };
}

/**
 * SO_PEERPIDFD (Linux 6.5): a pidfd for the process that connected. The kernel
 * takes it from the socket, not from anything the peer says, so the peer cannot
 * name another process; and a pidfd cannot be re-pointed by pid reuse. `cred`:
 * this socket's SO_PEERCRED, when the caller has read it already.
 */
export function peerPidfd(libc: Libc, fd: number, cred: PeerCred = peerCred(libc, fd)): Pidfd {
  const compat = kernelCompat(libc);
  if (!compat.has('peerpidfd')) return peerPidfdByCred(libc, fd);
  const buf = Buffer.alloc(4);
  if (libc.getsockopt(fd, K.UB_SOL_SOCKET, K.UB_SO_PEERPIDFD, buf) < 0) {
    const errno = libc.errno();
    if (errno === ENOPROTOOPT) {
      compat.markMissing('peerpidfd');
      return peerPidfdByCred(libc, fd);
    }
    throw errnoError('getsockopt(SO_PEERPIDFD)', errno, 'socket peer pidfd');
  }
  return new Pidfd(buf.readInt32LE(0), libc, cred.pid);
}

/**
 * Before Linux 6.5: SO_PEERCRED's pid (recorded by the kernel at connect()),
 * pidfd_open, and two checks that the process is the peer and not a later
 * owner of its pid:
 * - it started no later than `now` (the peer connected before we got here);
 * - it holds the other end of this connection (sock_diag names the peer socket,
 *   /proc/<pid>/fd must link to it), checked alive afterwards.
 * Left (docs/security.md): a peer that handed its end to the process that later
 * got its pid, and a peer that closed its end before we looked (refused).
 * `now` is read before pidfd_open, or given by a caller that noted when it
 * accepted the connection.
 */
export function peerPidfdByCred(libc: Libc, fd: number, now = uptimeTicks()): Pidfd {
  const cred = peerCred(libc, fd);
  if (cred.pid <= 0) throw new BrokerError('E_NO_PROCESS', 'socket peer is not visible in our pid namespace');
  const pidfd = Pidfd.open(libc, cred.pid);
  try {
    const started = startTimeOf(pidfd);
    if (started > now) {
      throw new BrokerError('E_NO_PROCESS', `socket peer ${cred.pid} exited and its pid was reused (started at ${started}, after ${now})`);
    }
    let peer: number | null = null;
    try {
      peer = unixPeerInode(libc, fd, cred.pid);
    } catch {
      // not found from its network namespace: not the process that connected
    }
    if (peer === null || !holdsSocket(cred.pid, peer) || !pidfd.isAlive()) {
      throw new BrokerError('E_NO_PROCESS', `socket peer ${cred.pid} does not hold its end of the connection: it exited (its pid may have been reused) or closed it`);
    }
    return pidfd;
  } catch (err) {
    pidfd.close();
    throw err;
  }
}

/**
 * CLOCK_BOOTTIME in USER_HZ ticks (100 on every Linux architecture we build
 * for), the clock of field 22 of /proc/<pid>/stat (start_boottime, Linux 5.3).
 * /proc/uptime has two decimals: ticks exactly (both truncate the same
 * boot-time clock, so a peer started in the same tick passes).
 */
export function uptimeTicks(): number {
  const [secs, frac = '0'] = readFileSync('/proc/uptime', 'utf8').split(' ')[0]!.split('.');
  return Number(secs) * 100 + Number(frac.padEnd(2, '0').slice(0, 2));
}
