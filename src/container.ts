import 'reflect-metadata';
import { Container, ContainerModule } from 'inversify';
import { BrokerService } from './broker/broker-service.js';
import { Authorizer } from './broker/authorizer.js';
import { ContextTable } from './broker/context-table.js';
import { Doctor } from './broker/doctor.js';
import { ExecOps } from './broker/exec-ops.js';
import { RequestKeyOps } from './broker/request-key-ops.js';
import { KeyRouter } from './broker/key-router.js';
import { MountHelperRoutes } from './broker/mount-helper-routes.js';
import { MountOps } from './broker/mount-ops.js';
import { MountWatcher } from './broker/mount-watcher.js';
import { NamespaceWalker } from './broker/namespace-walker.js';
import { RegistrationOps } from './broker/registration-ops.js';
import { RegistrationRestorer } from './broker/registration-restorer.js';
import { Registry } from './broker/registry.js';
import { StateStore } from './broker/state-store.js';
import { BrokerConfig, Clock, FileSystem, LoggerFactory, ProcessSpawner, ProcFs, Signals, Timers } from './common/tokens.js';
import { Libc, loadLibc } from './ns/libc.js';
import { NodeFileSystem, NodeProcessSpawner, NodeProcFs, NodeSignals, SystemClock, SystemTimers } from './platform/node-platform.js';
import { RequestHandlers, RequestHandlerTable } from './server/request-handlers.js';
import { SocketServer } from './server/socket-server.js';
import { NativeSpawner, Spawner } from './upcall/native-spawner.js';
import { UpcallRunner, ZygoteRunner } from './upcall/zygote-runner.js';
import { DnsServiceImpl } from './upcall/dns/dns-service-impl.js';
import { RelayPool } from './upcall/dns/relay-pool.js';
import { DnsService } from './upcall/dns/dns-service.js';
import { RelayLauncher, SpawnerRelayLauncher, ZygoteRelayLauncher } from './upcall/dns/relay-launcher.js';
import { ResolveOps } from './broker/resolve-ops.js';
import { StatusOps } from './broker/status-ops.js';
import { UpcallSlots } from './broker/upcall-slots.js';
import { UpcallDispatcher } from './broker/upcall-dispatcher.js';
import { ContextEvents } from './upcall/api/context-events.js';
import { Metrics } from './service/metrics.js';
import { MetricsServer } from './service/metrics-server.js';
import { SdNotify } from './service/sd-notify.js';

/**
 * The composition root: one ContainerModule per area, holding bindings only.
 * Node side effects (fs, clock, processes, libc) are bound to tokens here and
 * nowhere else, so a unit test builds the same classes with fakes.
 */
export function platformModule(): ContainerModule {
  return new ContainerModule(({ bind }) => {
    bind<Clock>(Clock).to(SystemClock).inSingletonScope();
    bind<Timers>(Timers).to(SystemTimers).inSingletonScope();
    bind<FileSystem>(FileSystem).to(NodeFileSystem).inSingletonScope();
    bind<ProcessSpawner>(ProcessSpawner).to(NodeProcessSpawner).inSingletonScope();
    bind<Signals>(Signals).to(NodeSignals).inSingletonScope();
    bind<ProcFs>(ProcFs).to(NodeProcFs).inSingletonScope();
    bind<Libc>(Libc).toDynamicValue(() => loadLibc()).inSingletonScope();
  });
}

export function configModule(config: BrokerConfig, loggers: LoggerFactory): ContainerModule {
  return new ContainerModule(({ bind }) => {
    bind<BrokerConfig>(BrokerConfig).toConstantValue(config);
    bind<LoggerFactory>(LoggerFactory).toConstantValue(loggers);
  });
}

export function serverModule(): ContainerModule {
  return new ContainerModule(({ bind }) => {
    bind<RequestHandlers>(RequestHandlers).toConstantValue(new RequestHandlerTable());
    bind(SocketServer).toSelf().inSingletonScope();
  });
}

export function upcallModule(): ContainerModule {
  return new ContainerModule(({ bind }) => {
    bind(NativeSpawner).toSelf().inSingletonScope();
    bind<Spawner>(Spawner).toService(NativeSpawner);
    bind(ZygoteRunner).toSelf().inSingletonScope();
    bind<UpcallRunner>(UpcallRunner).toService(ZygoteRunner);
    bind(SpawnerRelayLauncher).toSelf().inSingletonScope();
    bind(ZygoteRelayLauncher).toSelf().inSingletonScope();
    bind<RelayLauncher>(RelayLauncher).toService(ZygoteRelayLauncher);
    bind(RelayPool).toSelf().inSingletonScope();
    bind(DnsServiceImpl).toSelf().inSingletonScope();
    bind<DnsService>(DnsService).toService(DnsServiceImpl);
  });
}

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
    bind(RegistrationOps).toSelf().inSingletonScope();
    bind(ExecOps).toSelf().inSingletonScope();
    bind(RequestKeyOps).toSelf().inSingletonScope();
    bind(KeyRouter).toSelf().inSingletonScope();
    bind(MountHelperRoutes).toSelf().inSingletonScope();
    bind(MountOps).toSelf().inSingletonScope();
    bind(MountWatcher).toSelf().inSingletonScope();
    bind(ResolveOps).toSelf().inSingletonScope();
    bind(StatusOps).toSelf().inSingletonScope();
    bind(UpcallSlots).toSelf().inSingletonScope();
    bind(UpcallDispatcher).toSelf().inSingletonScope();
    bind(Metrics).toSelf().inSingletonScope();
    bind(MetricsServer).toSelf().inSingletonScope();
    bind(SdNotify).toSelf().inSingletonScope();
  });
}

export function createContainer(config: BrokerConfig, loggers: LoggerFactory): Container {
  const container = new Container();
  container.load(configModule(config, loggers), platformModule(), serverModule(), upcallModule(), brokerModule());
  return container;
}
