import { inject, injectable } from 'inversify';
import { BrokerError } from '../common/errors.js';
import { LoggerFactory, type Logger } from '../common/tokens.js';
import { Libc } from '../ns/libc.js';
import { sameNs } from '../ns/namespace-fd.js';
import { Pidfd } from '../ns/pidfd.js';
import { startTimeOf } from '../ns/proc-info.js';
import { ContextTable } from './context-table.js';
import { MountWatcher } from './mount-watcher.js';
import { type HeldNamespaces, NamespaceWalker } from './namespace-walker.js';
import { type Registration, Registry } from './registry.js';
import { StateStore, type StoredRegistration } from './state-store.js';

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
    @inject(Libc) private readonly libc: Libc,
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
        const context = this.contexts.adopt(this.revalidate(record));
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

  private revalidate(record: StoredRegistration): HeldNamespaces {
    const c = record.context;
    const host = this.walker.isOwnPidns(c.pidns);
    const init = Pidfd.open(this.libc, c.initPid);
    let p0;
    try {
      // Our own pid namespace's init may refuse PIDFD_GET_*_NAMESPACE (see NamespaceWalker.initOf).
      using self = host ? Pidfd.open(this.libc, process.pid) : null;
      p0 = (self ?? init).namespace('pid');
    } catch (err) {
      init.close();
      throw err;
    }
    const userns = p0.owner();
    const held: HeldNamespaces = { p0, userns, init, pidnsId: p0.identity(), usernsId: userns.identity(), initStartTime: 0, depth: 0, host };
    try {
      held.initStartTime = startTimeOf(init);
      if (held.initStartTime !== c.initStartTime) throw new Error(`pid ${c.initPid} now belongs to another process (start time differs)`);
      if (!sameNs(held.pidnsId, c.pidns)) throw new Error(`pid ${c.initPid} is not in pid namespace ${c.pidns.ino} any more`);
      if (!sameNs(held.usernsId, c.userns)) throw new Error(`pid namespace owner is not user namespace ${c.userns.ino}`);
      if (p0.pidFromPidns(1, [c.initPid]) !== c.initPid || !init.isAlive()) throw new Error(`pid ${c.initPid} is not the init of its pid namespace`);
      return held;
    } catch (err) {
      init.close();
      p0.close();
      userns.close();
      throw err;
    }
  }
}
