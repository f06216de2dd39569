import { injectable } from 'inversify';
import { PROTOCOL_VERSION, VERSION } from '../common/paths.js';
import type { OpContribution, RequestHandlers } from './request-handlers.js';

/** `ping` (every peer): the broker's version, the peer as the kernel saw it, and every op the table holds. */
@injectable()
export class PingOps implements OpContribution {
  private readonly startedAt = Date.now();

  registerOps(handlers: RequestHandlers): void {
    handlers.add('ping', (_params, peer) => ({
      version: VERSION,
      protocol: PROTOCOL_VERSION,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      peer: { listener: peer.listener, pid: peer.cred.pid, uid: peer.cred.uid, gid: peer.cred.gid },
      ops: handlers.ops(),
    }), { tenant: true });
  }
}
