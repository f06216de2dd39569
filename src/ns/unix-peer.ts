/**
 * Who holds the other end of a connected AF_UNIX socket: the SO_PEERPIDFD
 * fallback (before Linux 6.5) uses it to tell the peer from a process that
 * merely got its pid. sock_diag (NETLINK_SOCK_DIAG, unix_diag, Linux 3.3) names
 * the peer socket's inode; a process holds that socket if one of its fds links
 * to `socket:[inode]`.
 */
import { closeSync, fstatSync, openSync, readdirSync, readlinkSync } from 'node:fs';
import { BrokerError, errnoError } from '../common/errors.js';
import type { Libc } from './libc.js';

const NETLINK_SOCK_DIAG = 4;
const SOCK_DIAG_BY_FAMILY = 20;
const NLM_F_REQUEST = 1;
const NLMSG_ERROR = 2;
const AF_UNIX = 1;
const UDIAG_SHOW_PEER = 0x4;
const UNIX_DIAG_PEER = 2;

/**
 * The inode of the socket connected to `fd` (our end), or null when it has none
 * (the peer closed). sock_diag looks sockets up in its own network namespace,
 * and the kernel creates an accepted socket in the *connecting* process's
 * (unix_stream_connect()): so the query is made from the network namespace of
 * `pid`, the process said to be the peer (one of another namespace finds nothing:
 * ENOENT, refused). This thread enters it for the socket() call and comes back.
 */
export function unixPeerInode(libc: Libc, fd: number, pid?: number): number | null {
  const ino = fstatSync(fd).ino;
  const nl = pid === undefined ? libc.netlinkSocket(NETLINK_SOCK_DIAG) : netlinkSocketIn(libc, pid);
  if (nl < 0) throw errnoError('socket(AF_NETLINK, NETLINK_SOCK_DIAG)', libc.errno(), 'unix socket peer');
  try {
    // struct nlmsghdr (16) + struct unix_diag_req (24): one exact lookup by inode
    const req = Buffer.alloc(40);
    req.writeUInt32LE(40, 0);
    req.writeUInt16LE(SOCK_DIAG_BY_FAMILY, 4);
    req.writeUInt16LE(NLM_F_REQUEST, 6);
    req.writeUInt32LE(1, 8); // seq
    req.writeUInt8(AF_UNIX, 16);
    req.writeUInt32LE(0xffffffff, 20); // every state
    req.writeUInt32LE(ino, 24);
    req.writeUInt32LE(UDIAG_SHOW_PEER, 28);
    req.writeUInt32LE(0xffffffff, 32); // no cookie: INET_DIAG_NOCOOKIE
    req.writeUInt32LE(0xffffffff, 36);
    const kernel = Buffer.alloc(12); // struct sockaddr_nl, pid 0: the kernel
    kernel.writeUInt16LE(16 /* AF_NETLINK */, 0);
    if (libc.sendto(nl, req, kernel) < 0) throw errnoError('sendto(sock_diag)', libc.errno(), 'unix socket peer');
    const buf = Buffer.alloc(8192);
    const n = libc.recv(nl, buf);
    if (n < 0) throw errnoError('recv(sock_diag)', libc.errno(), 'unix socket peer');
    return parsePeer(buf.subarray(0, n), ino);
  } finally {
    closeSync(nl);
  }
}

const CLONE_NEWNET = 0x40000000;

/** A sock_diag socket in the network namespace of `pid` (ours when it is ours). */
function netlinkSocketIn(libc: Libc, pid: number): number {
  const theirs = openSync(`/proc/${pid}/ns/net`, 'r');
  const ours = openSync('/proc/thread-self/ns/net', 'r');
  try {
    if (fstatSync(theirs).ino === fstatSync(ours).ino) return libc.netlinkSocket(NETLINK_SOCK_DIAG);
    if (libc.setns(theirs, CLONE_NEWNET) < 0) throw errnoError('setns(CLONE_NEWNET)', libc.errno(), `network namespace of process ${pid}`);
    try {
      return libc.netlinkSocket(NETLINK_SOCK_DIAG);
    } finally {
      if (libc.setns(ours, CLONE_NEWNET) < 0) {
        // Staying in a container's network namespace would be far worse than dying.
        process.stderr.write(`upcall-broker: cannot return to our network namespace (errno ${libc.errno()}); exiting\n`);
        process.exit(70);
      }
    }
  } finally {
    closeSync(theirs);
    closeSync(ours);
  }
}

/** The UNIX_DIAG_PEER attribute of the answer for `ino` (struct unix_diag_msg is 16 bytes, then rtattrs). */
export function parsePeer(msg: Buffer, ino: number): number | null {
  if (msg.length < 16) throw new BrokerError('E_INTERNAL', 'sock_diag: short answer');
  if (msg.readUInt16LE(4) === NLMSG_ERROR) {
    const errno = -msg.readInt32LE(16);
    throw errnoError('sock_diag', errno, 'unix socket peer');
  }
  const end = Math.min(msg.length, msg.readUInt32LE(0));
  if (end < 32 || msg.readUInt32LE(20) !== ino) throw new BrokerError('E_INTERNAL', 'sock_diag: answer for another socket');
  for (let off = 32; off + 4 <= end;) {
    const len = msg.readUInt16LE(off);
    if (len < 4) break;
    if (msg.readUInt16LE(off + 2) === UNIX_DIAG_PEER && len >= 8) return msg.readUInt32LE(off + 4);
    off += (len + 3) & ~3;
  }
  return null;
}

/** Whether process `pid` has an fd open on the socket with inode `inode`. */
export function holdsSocket(pid: number, inode: number): boolean {
  const want = `socket:[${inode}]`;
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  for (const fd of fds) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) === want) return true;
    } catch {
      // closed meanwhile
    }
  }
  return false;
}
