import { ContainerModule } from 'inversify';
import { DnsServiceImpl } from './dns/dns-service-impl.js';
import { DnsService } from './dns/dns-service.js';
import { RelayLauncher, SpawnerRelayLauncher, ZygoteRelayLauncher } from './dns/relay-launcher.js';
import { RelayPool } from './dns/relay-pool.js';
import { Spawner } from './api/spawner.js';
import { NativeSpawner } from './native-spawner.js';
import { UpcallRunner } from './api/upcall-runner.js';
import { ZygoteRunner } from './zygote-runner.js';

/** The upcall area: the zygote runner, the one-shot spawner, DNS (relays and the resolver service). */
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
