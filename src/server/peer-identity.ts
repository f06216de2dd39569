import type { PeerCred } from '../ns/peer.js';
import type { Pidfd } from '../ns/pidfd.js';

/** Which socket a connection came in on; it bounds what the peer may ask. */
export type Listener = 'admin' | 'tenant';

/**
 * Who is on the other end, as the kernel says: SO_PEERCRED and SO_PEERPIDFD,
 * taken at accept() time. Nothing in a request can change it.
 */
export interface PeerIdentity {
  listener: Listener;
  cred: PeerCred;
  pidfd: Pidfd;
}
