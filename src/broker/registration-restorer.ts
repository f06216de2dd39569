import { inject, injectable } from 'inversify';
import { BrokerError } from '../common/errors.js';
import { LoggerFactory, type Logger } from '../common/tokens.js';
import { ContextTable } from './context-table.js';
import { MountWatcher } from './mount-watcher.js';
import { NamespaceWalker } from './namespace-walker.js';
import { type Registration, Registry } from './registry.js';
import { StateStore } from './state-store.js';

/**
 * Broker start: put back every stored registration whose context still holds
 * against the kernel (init alive, same start time, same pid and user namespace
 * identities), and drop the rest with a log line saying why. Nothing is ever
 * re-pointed at a different process. The restored registrations whose unmount
 * was watched are watched again (MountWatcher.watchRestored), each checked at once.
 */
@injectable()
export class RegistrationRestorer {
  private readonly log: Logger;

  constructor(
    @inject(StateStore) private readonly store: StateStore,
    @inject(Registry) private readonly registry: Registry,
    @inject(ContextTable) private readonly contexts: ContextTable,
    @inject(NamespaceWalker) private readonly walker: NamespaceWalker,
    @inject(MountWatcher) private readonly watcher: MountWatcher,
    @inject(LoggerFactory) loggers: LoggerFactory,
  ) {
    this.log = loggers.get('broker:RegistrationRestorer');
  }

  async restore(): Promise<{ restored: number; dropped: number }> {
    const records = await this.store.load();
    const restoredRegs: Registration[] = [];
    for (const record of records) {
      try {
        const context = this.contexts.adopt(this.walker.rehold(record.context));
        restoredRegs.push(this.registry.restore(record, context));
      } catch (err) {
        this.log.audit('dropped stale registration', {
          id: record.id, mountpoint: record.mountpoint, initPid: record.context.initPid, reason: BrokerError.from(err).message,
        });
      }
    }
    const restored = restoredRegs.length;
    // Before the sockets open: a registration whose mount went while the broker was down must not route a request.
    const { learnt, ...mounts } = this.watcher.watchRestored(restoredRegs);
    await Promise.all(learnt.map((reg) => this.registry.resave(reg).catch((err: unknown) =>
      this.log.warn('cannot save the mount namespace learnt for a restored registration; the next restart looks for it again', { id: reg.id, error: String(err) }))));
    // Drop the stale records from the disk too (a compaction: a new snapshot, the journals it covers
    // removed). A full disk must not keep the broker from serving what it restored: the disk still
    // holds every restored record, and the next compaction drops the stale ones.
    if (records.length > 0) {
      await this.registry.persist().catch((err: unknown) => this.log.error('cannot rewrite the state file after restore; serving anyway', { error: String(err) }));
    }
    this.log.info('registrations restored', { restored, dropped: records.length - restored, mounts });
    return { restored, dropped: records.length - restored };
  }
}
