import { inject, injectable } from 'inversify';
import { z } from 'zod';
import { BrokerError } from '../common/errors.js';
import { BrokerConfig, LoggerFactory, type Logger } from '../common/tokens.js';
import type { RegistrationInfo } from '../common/types.js';
import { DEFAULT_LIMITS } from '../server/limits.js';
import { containerKey, containerPidns } from '../server/tenant-key.js';
import type { PeerIdentity } from '../server/peer-identity.js';
import type { JsonText } from '../server/framing.js';
import { JsonChunkWriter } from '../server/json-chunks.js';
import { parseParams } from '../server/protocol.js';
import type { OpContribution, RequestHandlers } from '../server/request-handlers.js';
import { Metrics } from '../service/metrics.js';
import { Authorizer, notFoundError, type Viewer } from './authorizer.js';
import { ContextTable } from './context-table.js';
import { type Registration, Registry, type Selector, toInfo } from './registry.js';

const RegisterParams = z.object({
  mountpoint: z.string().min(1).max(4096).startsWith('/'),
  fstype: z.string().min(1).max(64).optional(),
  source: z.string().max(1024).optional(),
}).strict();

/**
 * Registrations serialised per turn of the event loop by `list`: a slice's JSON (about 330 bytes a
 * registration) stays under V8's large-object size (128 KiB), so it is young garbage, not a large object.
 */
const LIST_SLICE = 250;

const IdParams = z.object({ id: z.string().max(64) }).strict();

const ShowParams = z.union([
  z.object({ id: z.string().max(64) }).strict(),
  z.object({ mountId: z.number().int().nonnegative() }).strict(),
  z.object({ path: z.string().min(1).max(4096) }).strict(),
]);

/** The registration ops of docs/protocol.md, each authorised by the kernel's view of the peer. */
@injectable()
export class RegistrationOps implements OpContribution {
  private readonly quota: number;
  private readonly log: Logger;

  constructor(
    @inject(Registry) private readonly registry: Registry,
    @inject(Authorizer) private readonly auth: Authorizer,
    @inject(ContextTable) private readonly contexts: ContextTable,
    @inject(Metrics) private readonly metrics: Metrics,
    @inject(BrokerConfig) config: BrokerConfig,
    @inject(LoggerFactory) loggers: LoggerFactory,
  ) {
    this.quota = config.limits?.containerRegistrations ?? DEFAULT_LIMITS.containerRegistrations;
    this.log = loggers.get('broker:RegistrationOps');
  }

  registerOps(handlers: RequestHandlers): void {
    handlers.add('register', (p, peer) => this.register(p, peer), { tenant: true });
    handlers.add('unregister', (p, peer) => this.unregister(p, peer), { tenant: true });
    handlers.add('list', (_p, peer) => this.list(peer), { tenant: true });
    handlers.add('show', (p, peer) => toInfo(this.resolve(parseParams(ShowParams, p), peer)), { tenant: true });
  }

  private async register(params: unknown, peer: PeerIdentity): Promise<RegistrationInfo> {
    const p = parseParams(RegisterParams, params);
    try {
      this.auth.assertMayRegister(peer);
      // Checked and then registered with no await in between: Registry.register
      // counts the new registration before its first await, so concurrent
      // requests cannot all pass the check.
      if (!this.auth.isHostRoot(peer)) this.assertUnderQuota(peer);
      const reg = await this.registry.register({
        mounter: peer.pidfd, cred: peer.cred, mountpoint: p.mountpoint, fstype: p.fstype, source: p.source,
      });
      this.metrics.registration('ok');
      return toInfo(reg);
    } catch (err) {
      const e = BrokerError.from(err);
      this.metrics.registration(e.code, `${p.mountpoint}: ${e.message}`);
      throw e;
    }
  }

  /**
   * limits.containerRegistrations: each registration holds up to 5 KiB in
   * memory and in the state journal, so one container may not fill the disk
   * for everyone. Counted per container (nested contexts share its quota).
   */
  private assertUnderQuota(peer: PeerIdentity): void {
    using pidns = peer.pidfd.namespace('pid');
    const container = containerKey(containerPidns(pidns));
    const held = this.contexts.registrationsIn(container);
    if (held < this.quota) return;
    this.log.audit('refused', { op: 'register', peerPid: peer.cred.pid, peerUid: peer.cred.uid, container, registrations: held, reason: 'registration quota' });
    throw new BrokerError('E_QUOTA', `this container holds ${held} registrations, its quota (limits.containerRegistrations ${this.quota})`, { limit: this.quota });
  }

  private async unregister(params: unknown, peer: PeerIdentity): Promise<{ id: string; removed: true }> {
    const { id } = parseParams(IdParams, params);
    const reg = this.registry.find({ id })[0];
    if (!reg) throw notFoundError();
    this.auth.assertMayUnregister(peer, reg.context, reg.mounter.uid);
    await this.registry.unregister(reg);
    return { id, removed: true };
  }

  /**
   * Every registration the peer may see. Thousands are serialised a slice at a
   * time, yielding to the event loop between slices (a `list` of 10,000 built
   * at once blocked it for over 100 ms), each slice's JSON encoded at once into
   * pooled chunks (JsonChunkWriter): no string or buffer of the whole answer
   * is made, and a slice's string (under V8's large-object size) dies young.
   */
  private async list(peer: PeerIdentity): Promise<RegistrationInfo[] | JsonText> {
    const viewer = this.auth.viewer(peer);
    const all = this.visibleTo(viewer);
    if (all.length <= LIST_SLICE) return all.map(toInfo);
    const out = new JsonChunkWriter();
    for (let i = 0; i < all.length; i += LIST_SLICE) {
      if (i > 0) await new Promise((resolve) => setImmediate(resolve));
      const json = JSON.stringify(all.slice(i, i + LIST_SLICE).map(toInfo));
      // "[a,b]" "[c,d]" ... written as "[a,b" ",c,d" ... "]"
      out.write(i === 0 ? json.slice(0, -1) : `,${json.slice(1, -1)}`);
    }
    out.write(']');
    return out.finish();
  }

  /**
   * What the viewer may see: every registration for host root; for a tenant,
   * those of its own live context, found through the context (a container's
   * `list` or `show` does not scan every registration of every container).
   */
  private visibleTo(viewer: Viewer): Registration[] {
    if (viewer.hostRoot) return this.registry.list();
    const ctx = viewer.contextId === null ? undefined : this.contexts.liveFor(viewer.contextId);
    return ctx ? this.registry.ofContext(ctx) : [];
  }

  /** One registration by id, mount id or path, among those the peer may see. */
  resolve(selector: Selector, peer: PeerIdentity): Registration {
    const viewer = this.auth.viewer(peer);
    const matches = this.registry.find(selector, viewer.hostRoot ? undefined : this.visibleTo(viewer));
    if (matches.length === 0) throw notFoundError();
    if (matches.length > 1) {
      throw new BrokerError('E_BAD_REQUEST', `${matches.length} registrations match; use an id`, { ids: matches.map((r) => r.id) });
    }
    return matches[0]!;
  }
}
