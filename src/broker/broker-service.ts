import { inject, injectable } from 'inversify';
import { VERSION } from '../common/paths.js';
import { LoggerFactory, type Logger } from '../common/tokens.js';
import { SocketServer } from '../server/socket-server.js';
import { ContextTable } from './context-table.js';
import { MountWatcher } from './mount-watcher.js';
import { MetricsServer } from '../service/metrics-server.js';
import { SdNotify } from '../service/sd-notify.js';
import { Registry } from './registry.js';
import { UpcallRunner } from '../upcall/api/upcall-runner.js';
import { RelayPool } from '../upcall/dns/relay-pool.js';
import { RegistrationRestorer } from './registration-restorer.js';
import { StateStore } from './state-store.js';

/** The running service: starts and stops it (the ops reach the socket server as OpContributions, src/broker/broker-module.ts). */
@injectable()
export class BrokerService {
  private readonly log: Logger;

  constructor(
    @inject(SocketServer) private readonly server: SocketServer,
    @inject(RegistrationRestorer) private readonly restorer: RegistrationRestorer,
    @inject(ContextTable) private readonly contexts: ContextTable,
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
