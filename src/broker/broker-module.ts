import { ContainerModule, type Newable } from 'inversify';
import { OpContribution } from '../server/request-handlers.js';
import { ContextEvents } from '../upcall/api/context-events.js';
import { Authorizer } from './authorizer.js';
import { BrokerService } from './broker-service.js';
import { ContextTable } from './context-table.js';
import { Doctor } from './doctor.js';
import { ExecOps } from './exec-ops.js';
import { KeyRouter } from './key-router.js';
import { MountHelperRoutes } from './mount-helper-routes.js';
import { MountOps } from './mount-ops.js';
import { MountWatcher } from './mount-watcher.js';
import { NamespaceWalker } from './namespace-walker.js';
import { RegistrationOps } from './registration-ops.js';
import { RegistrationRestorer } from './registration-restorer.js';
import { Registry } from './registry.js';
import { RequestKeyOps } from './request-key-ops.js';
import { ResolveOps } from './resolve-ops.js';
import { StateStore } from './state-store.js';
import { StatusOps } from './status-ops.js';
import { UpcallDispatcher } from './upcall-dispatcher.js';
import { UpcallSlots } from './upcall-slots.js';

/** The broker's ops, each contributed to the server's handler table (OpContribution). */
const OPS: ReadonlyArray<Newable<OpContribution>> = [RegistrationOps, MountOps, ExecOps, ResolveOps, RequestKeyOps, StatusOps];

/**
 * The broker area: the context stage (NamespaceWalker, ContextTable), the
 * registrations and their state, the upcall dispatcher, and the ops.
 */
export function brokerModule(): ContainerModule {
  return new ContainerModule(({ bind }) => {
    bind(BrokerService).toSelf().inSingletonScope();
    bind(Doctor).toSelf().inSingletonScope();
    bind(NamespaceWalker).toSelf().inSingletonScope();
    bind(ContextTable).toSelf().inSingletonScope();
    bind<ContextEvents>(ContextEvents).toService(ContextTable);
    bind(StateStore).toSelf().inSingletonScope();
    bind(Registry).toSelf().inSingletonScope();
    bind(RegistrationRestorer).toSelf().inSingletonScope();
    bind(Authorizer).toSelf().inSingletonScope();
    bind(KeyRouter).toSelf().inSingletonScope();
    bind(MountHelperRoutes).toSelf().inSingletonScope();
    bind(MountWatcher).toSelf().inSingletonScope();
    bind(UpcallSlots).toSelf().inSingletonScope();
    bind(UpcallDispatcher).toSelf().inSingletonScope();
    for (const op of OPS) {
      bind<OpContribution>(op).toSelf().inSingletonScope();
      bind<OpContribution>(OpContribution).toService(op);
    }
  });
}
