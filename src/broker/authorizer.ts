import { inject, injectable } from 'inversify';
import { BrokerError } from '../common/errors.js';
import { LoggerFactory, type Logger } from '../common/tokens.js';
import { type NsIdentity, sameNs } from '../ns/namespace-fd.js';
import { rootUidOf } from '../ns/proc-info.js';
import type { PeerIdentity } from '../server/peer-identity.js';
import type { Context } from './context-table.js';
import { NamespaceWalker } from './namespace-walker.js';

/**
 * The one answer for a registration the peer cannot see, whether it was never
 * issued or belongs to another context (docs/security.md T2): same code, same
 * message, no details, so neither its existence nor the caller's input leaks.
 */
export function notFoundError(): BrokerError {
  return new BrokerError('E_NOT_FOUND', 'no such registration');
}

export interface Viewer {
  hostRoot: boolean;
  /** P0 of the peer's own context (null: it sees nothing but what host root may). */
  contextId: NsIdentity | null;
}

/**
 * Who may do what (docs/protocol.md, Authorization). Decided only from the
 * kernel's view of the peer: its listener, SO_PEERCRED, and its namespaces read
 * from its pidfd. Every refusal is an audit line.
 */
@injectable()
export class Authorizer {
  private readonly log: Logger;

  constructor(
    @inject(NamespaceWalker) private readonly walker: NamespaceWalker,
    @inject(LoggerFactory) loggers: LoggerFactory,
  ) {
    this.log = loggers.get('broker:Authorizer');
  }

  /** Root in the broker's own user namespace, on the admin socket, as the peer connected (PeerIdentity.hostRoot). */
  isHostRoot(peer: PeerIdentity): boolean {
    return peer.hostRoot;
  }

  /** The P0 the walk rule finds for the peer, or null when its pid namespace is not owned (it sees nothing). */
  peerContextId(peer: PeerIdentity): NsIdentity | null {
    try {
      const { p0, userns } = this.walker.walk(peer.pidfd);
      userns.close();
      using held = p0;
      return held.identity();
    } catch (err) {
      if (BrokerError.from(err).code === 'E_NS_NOT_OWNED') return null;
      throw err;
    }
  }

  /**
   * CAP_SYS_ADMIN as the peer held it with its connect-time uid (the uid the
   * registration records): PeerIdentity.sysAdmin, read once at accept.
   */
  assertMayRegister(peer: PeerIdentity): void {
    if (this.isHostRoot(peer) || peer.sysAdmin) return;
    this.refuse(peer, 'register', 'peer lacks CAP_SYS_ADMIN in its user namespace with the credentials it connected with');
  }

  /** Work out once per request what the peer may see. */
  viewer(peer: PeerIdentity): Viewer {
    return this.isHostRoot(peer) ? { hostRoot: true, contextId: null } : { hostRoot: false, contextId: this.peerContextId(peer) };
  }

  /** Tenant peers see only their own context; others' registrations look absent. */
  maySee(viewer: Viewer, ctx: Context): boolean {
    return viewer.hostRoot || (viewer.contextId !== null && sameNs(viewer.contextId, ctx.pidnsId));
  }

  assertMayUnregister(peer: PeerIdentity, ctx: Context, mounterUid: number): void {
    const viewer = this.viewer(peer);
    if (viewer.hostRoot) return;
    if (!this.maySee(viewer, ctx)) throw this.notFound(peer);
    if (peer.cred.uid === mounterUid || rootUidOf(peer.pidfd) === peer.cred.uid) return;
    this.refuse(peer, 'unregister', 'only the mounter or the container\'s root may unregister');
  }

  /** A registration outside the peer's context: answered exactly as one that does not exist (notFoundError). */
  notFound(peer: PeerIdentity): BrokerError {
    this.log.audit('refused', { peerPid: peer.cred.pid, peerUid: peer.cred.uid, reason: 'registration outside the peer\'s context' });
    return notFoundError();
  }

  private refuse(peer: PeerIdentity, op: string, reason: string): never {
    this.log.audit('refused', { op, peerPid: peer.cred.pid, peerUid: peer.cred.uid, listener: peer.listener, reason });
    throw new BrokerError('E_PERMISSION', `${op} refused: ${reason}`);
  }
}
