import { ContainerModule } from 'inversify';
import { MetricsServer } from './metrics-server.js';
import { Metrics } from './metrics.js';
import { SdNotify } from './sd-notify.js';

/** The service area: Prometheus metrics and their endpoint, sd_notify. */
export function serviceModule(): ContainerModule {
  return new ContainerModule(({ bind }) => {
    bind(Metrics).toSelf().inSingletonScope();
    bind(MetricsServer).toSelf().inSingletonScope();
    bind(SdNotify).toSelf().inSingletonScope();
  });
}
