import 'reflect-metadata';
import { Container, ContainerModule } from 'inversify';
import { BrokerConfig, Clock, FileSystem, LoggerFactory, ProcessSpawner, ProcFs, Random, Signals, Timers } from './common/tokens.js';
import { Libc, loadLibc } from './ns/libc.js';
import { brokerModule } from './broker/broker-module.js';
import { serverModule } from './server/server-module.js';
import { serviceModule } from './service/service-module.js';
import { upcallModule } from './upcall/upcall-module.js';
import { NodeFileSystem, NodeProcessSpawner, NodeProcFs, NodeSignals, SystemClock, SystemRandom, SystemTimers } from './platform/node-platform.js';

/**
 * The composition root: one ContainerModule per area, holding bindings only.
 * The platform and config modules are here; each other area has its own
 * module file (src/server/server-module.ts, src/service/service-module.ts,
 * src/upcall/upcall-module.ts, src/broker/broker-module.ts), where its ops
 * are bound as OpContributions. Node side effects (fs, clock, processes,
 * libc) are bound to tokens here and nowhere else, so a unit test builds the
 * same classes with fakes.
 */
export function platformModule(): ContainerModule {
  return new ContainerModule(({ bind }) => {
    bind<Clock>(Clock).to(SystemClock).inSingletonScope();
    bind<Timers>(Timers).to(SystemTimers).inSingletonScope();
    bind<Random>(Random).to(SystemRandom).inSingletonScope();
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

export { brokerModule, serverModule, serviceModule, upcallModule };

export function createContainer(config: BrokerConfig, loggers: LoggerFactory): Container {
  const container = new Container();
  container.load(configModule(config, loggers), platformModule(), serverModule(), serviceModule(), upcallModule(), brokerModule());
  return container;
}
