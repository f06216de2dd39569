import type { NamespaceFd, NsIdentity } from '../ns/namespace-fd.js';
import type { Pidfd } from '../ns/pidfd.js';

/** What registration holds for a container: P0, U, and P0's init. */
export interface HeldNamespaces {
  p0: NamespaceFd;
  userns: NamespaceFd;
  init: Pidfd;
  pidnsId: NsIdentity;
  usernsId: NsIdentity;
  initStartTime: number;
  /** How many NS_GET_PARENT steps were taken from the mounter's pid namespace. */
  depth: number;
  /**
   * P0 is the broker's own pid namespace: the "container" is the host. Upcalls
   * then run in the broker's own namespaces, as keyutils would run them.
   */
  host: boolean;
}

/** What a stored registration remembers of its context (state-store.ts), to be held again on restore. */
export interface StoredContext {
  initPid: number;
  initStartTime: number;
  pidns: NsIdentity;
  userns: NsIdentity;
}

/** Close the held fds (ContextTable, once a context is let go or its init exited). */
export function releaseHeld(h: HeldNamespaces): void {
  h.init.close();
  h.p0.close();
  h.userns.close();
}
