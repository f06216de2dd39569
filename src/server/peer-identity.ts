import type { ProcFs } from '../common/tokens.js';
import { type NsIdentity, sameNs } from '../ns/namespace-fd.js';
import { statusHasSysAdmin } from '../ns/proc-info.js';
import type { PeerCred } from '../ns/peer.js';
import type { Pidfd } from '../ns/pidfd.js';

/** Which socket a connection came in on; it bounds what the peer may ask. */
export type Listener = 'admin' | 'tenant';

/**
 * Who is on the other end, as the kernel says: SO_PEERCRED and SO_PEERPIDFD,
 * taken at accept() time, and what follows from them then (identifyPeer).
 * Nothing in a request can change it.
 */
export interface PeerIdentity {
  listener: Listener;
  cred: PeerCred;
  pidfd: Pidfd;
  /**
   * Root in the broker's own user namespace, on the admin socket: the
   * connect-time uid 0 (SO_PEERCRED), and the user namespace the peer was in
   * when its connection was accepted (isHostRootPeer). Like a file opened by
   * root, the connection keeps that standing if its process later enters
   * another user namespace.
   */
  hostRoot: boolean;
  /**
   * CAP_SYS_ADMIN (in the peer's own user namespace) as the peer held it with
   * the credentials of `cred` (connectSysAdmin): what `register` checks, so the
   * privilege and the uid it records come from one moment. Not read for host
   * root (false), whom every check lets through before it asks this.
   */
  sysAdmin: boolean;
}

/** Root in the broker's user namespace (brokerUserns) on the admin socket. */
export function isHostRootPeer(listener: Listener, uid: number, pidfd: Pick<Pidfd, 'namespace'>, brokerUserns: NsIdentity): boolean {
  if (listener !== 'admin' || uid !== 0) return false;
  using userns = pidfd.namespace('user');
  return sameNs(userns.identity(), brokerUserns);
}

/** What the broker knows of a peer it has just accepted: host root, or what /proc says of its capability. */
export function identifyPeer(listener: Listener, cred: PeerCred, pidfd: Pidfd, brokerUserns: NsIdentity, proc: ProcFs): PeerIdentity {
  const hostRoot = isHostRootPeer(listener, cred.uid, pidfd, brokerUserns);
  return { listener, cred, pidfd, hostRoot, sysAdmin: !hostRoot && connectSysAdmin(pidfd, cred.uid, proc) };
}

/**
 * Whether the peer holds CAP_SYS_ADMIN with the credentials the kernel recorded
 * at connect() (SO_PEERCRED), read once when the connection is accepted. The
 * capability is read from /proc/<pid>/status together with the effective uid,
 * and counts only if that uid is still the connect-time one: a non-root process
 * that connects and then execs a setuid-root program (keeping a copy of the
 * socket to write on) has euid 0 by then, not the uid SO_PEERCRED holds, and so
 * no privilege here. Read before the pidfd's liveness check, so a reused pid
 * cannot answer for the peer (docs/security.md T11).
 */
export function connectSysAdmin(pidfd: Pick<Pidfd, 'pid' | 'isAlive'>, uid: number, proc: ProcFs): boolean {
  let status: string;
  try {
    status = proc.readText(`${pidfd.pid}/status`);
  } catch {
    return false;
  }
  if (!pidfd.isAlive()) return false;
  const uids = /^Uid:\s*(\d+)\s+(\d+)/m.exec(status);
  return uids !== null && Number(uids[2]) === uid && statusHasSysAdmin(status);
}
