import type { Socket } from 'node:net';
import { BrokerError, errnoError } from '../common/errors.js';
import { K } from './kernel-constants.js';
import type { Libc } from './libc.js';
import { Pidfd } from './pidfd.js';

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
 * name another process; and a pidfd cannot be re-pointed by pid reuse.
 */
export function peerPidfd(libc: Libc, fd: number): Pidfd {
  const cred = peerCred(libc, fd);
  const buf = Buffer.alloc(4);
  if (libc.getsockopt(fd, K.UB_SOL_SOCKET, K.UB_SO_PEERPIDFD, buf) < 0) {
    throw errnoError('getsockopt(SO_PEERPIDFD)', libc.errno(), 'socket peer pidfd');
  }
  return new Pidfd(buf.readInt32LE(0), libc, cred.pid);
}
