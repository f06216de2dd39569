import { ContainerModule } from 'inversify';
import { PingOps } from './ping-ops.js';
import { OpContribution, RequestHandlers, RequestHandlerTable } from './request-handlers.js';
import { SocketServer } from './socket-server.js';

/** The server area: the socket server and the handler table that collects every area's OpContribution. */
export function serverModule(): ContainerModule {
  return new ContainerModule(({ bind }) => {
    bind<RequestHandlers>(RequestHandlers).to(RequestHandlerTable).inSingletonScope();
    bind(SocketServer).toSelf().inSingletonScope();
    bind(PingOps).toSelf().inSingletonScope();
    bind<OpContribution>(OpContribution).toService(PingOps);
  });
}
