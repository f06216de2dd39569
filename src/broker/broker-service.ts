import { inject, injectable } from 'inversify';
import { PROTOCOL_VERSION, VERSION } from '../common/paths.js';
import { LoggerFactory, type Logger } from '../common/tokens.js';
import { RequestHandlers } from '../server/request-handlers.js';
import { SocketServer } from '../server/socket-server.js';
import { ContextTable } from './context-table.js';
import { ExecOps } from './exec-ops.js';
import { MountOps } from './mount-ops.js';
import { MountWatcher } from './mount-watcher.js';
import { RequestKeyOps } from './request-key-ops.js';
import { ResolveOps } from './resolve-ops.js';
import { StatusOps } from './status-ops.js';
import { MetricsServer } from '../service/metrics-server.js';
import { SdNotify } from '../service/sd-notify.js';
import { Registry } from './registry.js';
import { UpcallRunner } from '../upcall/zygote-runner.js';
import { RelayPool } from '../upcall/dns/relay-pool.js';
import { RegistrationOps } from './registration-ops.js';
import { RegistrationRestorer } from './registration-restorer.js';
import { StateStore } from './state-store.js';

/** The running service: wires the ops into the socket server, starts and stops it. */
@injectable()
export class BrokerService {
  private readonly log: Logger;
  private readonly startedAt = Date.now();

  constructor(
    @inject(SocketServer) private readonly server: SocketServer,
    @inject(RequestHandlers) private readonly handlers: RequestHandlers,
    @inject(RegistrationRestorer) private readonly restorer: RegistrationRestorer,
    @inject(ContextTable) private readonly contexts: ContextTable,
    // Resolved for their side effect: each adds its ops to the handler table.
    @inject(RegistrationOps) _registrationOps: RegistrationOps,
    @inject(ExecOps) _execOps: ExecOps,
    @inject(RequestKeyOps) _requestKeyOps: RequestKeyOps,
    @inject(ResolveOps) _resolveOps: ResolveOps,
    @inject(StatusOps) _statusOps: StatusOps,
    @inject(MountOps) _mountOps: MountOps,
    @inject(MountWatcher) private readonly mounts: MountWatcher,
    @inject(MetricsServer) private readonly metricsServer: MetricsServer,
    @inject(SdNotify) private readonly sd: SdNotify,
    @inject(Registry) private readonly registry: Registry,
    @inject(UpcallRunner) private readonly runner: UpcallRunner,
    @inject(RelayPool) private readonly relays: RelayPool,
    @inject(StateStore) private readonly store: StateStore,
    @inject(LoggerFactory) loggers: LoggerFactory,
  ) {
    this.log = loggers.get('broker:BrokerService');
    this.handlers.add('ping', (_params, peer) => ({
      version: VERSION,
      protocol: PROTOCOL_VERSION,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      peer: { listener: peer.listener, pid: peer.cred.pid, uid: peer.cred.uid, gid: peer.cred.gid },
      ops: this.handlers.ops(),
    }), { tenant: true });
  }

  async start(): Promise<void> {
    await this.restorer.restore();
    this.contexts.startWatching();
    await this.server.start();
    await this.metricsServer.start();
    this.log.info('ready', { version: VERSION, pid: process.pid });
    this.sd.ready(`serving ${this.registry.size} registrations`);
  }

  async stop(): Promise<void> {
    this.sd.stopping();
    await this.server.stop();
    await this.metricsServer.stop();
    this.relays.close();
    await this.runner.stop();
    await this.store.close(); // what was acknowledged is on disk already; this waits for a compaction and closes the journal
    this.mounts.stop();
    this.contexts.stop();
    this.log.info('stopped');
  }
}
