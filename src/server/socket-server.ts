import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { inject, injectable } from 'inversify';
import { BrokerError } from '../common/errors.js';
import { BrokerConfig, Clock, LoggerFactory, type Logger, ProcFs } from '../common/tokens.js';
import { Libc } from '../ns/libc.js';
import type { NsIdentity } from '../ns/namespace-fd.js';
import { Pidfd } from '../ns/pidfd.js';
import { peerPidfd, peerCred, socketFd } from '../ns/peer.js';
import { Connection, endWithAnswer } from './connection.js';
import { encodeFrame } from './framing.js';
import { Admission, type Limits, limitsOf } from './limits.js';
import { identifyPeer, type Listener, type PeerIdentity } from './peer-identity.js';
import { errorResponse, okResponse, type Request, type Response } from './protocol.js';
import { RequestHandlers } from './request-handlers.js';
import { containerKey, containerPidns } from './tenant-key.js';

const SD_LISTEN_FDS_START = 3;
const ADMIN_TENANT = 'admin';

/**
 * One container, as far as fairness goes: the outermost pid namespace under the
 * broker's own on the peer's way up (tenant-key.ts), so pid namespaces and
 * nested containers made inside a container share its limits. Root on the admin
 * socket (host tools, and the request-key handler the kernel starts once per
 * upcall, for every container at once) is not a tenant: it has a pool of its own.
 */
function tenantKey(peer: PeerIdentity): string {
  if (peer.listener === 'admin' && peer.cred.uid === 0) return ADMIN_TENANT;
  using pid = peer.pidfd.namespace('pid');
  return containerKey(containerPidns(pid));
}

/**
 * LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES from systemd: fds 3.. are listening
 * sockets, named "admin"/"tenant" by the socket unit's FileDescriptorName=
 * (unnamed: the first is admin, the second tenant). The variables are removed
 * so children do not inherit them, as sd_listen_fds(1) does.
 */
export function activatedFds(env: NodeJS.ProcessEnv = process.env): Array<{ fd: number; listener: Listener }> {
  const n = Number(env['LISTEN_FDS'] ?? 0);
  if (Number(env['LISTEN_PID']) !== process.pid || !(n > 0)) return [];
  const names = (env['LISTEN_FDNAMES'] ?? '').split(':');
  delete env['LISTEN_PID'];
  delete env['LISTEN_FDS'];
  delete env['LISTEN_FDNAMES'];
  return Array.from({ length: n }, (_, i) => ({
    fd: SD_LISTEN_FDS_START + i,
    listener: (names[i] === 'tenant' || (names[i] !== 'admin' && i === 1) ? 'tenant' : 'admin') as Listener,
  }));
}

/**
 * The broker's two UNIX stream sockets. The admin socket (0600, root) takes every
 * op; the tenant socket (0666, bind-mounted into containers) only the ops marked
 * tenant-safe, and each of those scopes itself by the kernel's view of the peer.
 */
@injectable()
export class SocketServer {
  private readonly log: Logger;
  private readonly servers: Array<{ server: Server; path: string }> = [];
  private readonly connections = new Set<Socket>();
  private readonly limits: Limits;
  private readonly admission: Admission;
  private readonly brokerUserns: NsIdentity;

  constructor(
    @inject(BrokerConfig) private readonly config: BrokerConfig,
    @inject(RequestHandlers) private readonly handlers: RequestHandlers,
    @inject(Libc) private readonly libc: Libc,
    @inject(LoggerFactory) loggers: LoggerFactory,
    @inject(Clock) private readonly clock: Clock,
    @inject(ProcFs) private readonly proc: ProcFs,
  ) {
    this.log = loggers.get('server:SocketServer');
    this.limits = limitsOf(config);
    this.admission = new Admission(this.limits, new Set([ADMIN_TENANT]));
    using self = Pidfd.open(libc, process.pid);
    using userns = self.namespace('user');
    this.brokerUserns = userns.identity();
  }

  async start(): Promise<void> {
    const activated = activatedFds();
    if (activated.length > 0) {
      for (const { fd, listener } of activated) await this.adopt(fd, listener);
      return;
    }
    await this.listen(this.config.adminSocket, 'admin', 0o600);
    if (this.config.tenantSocket !== null) await this.listen(this.config.tenantSocket, 'tenant', 0o666);
  }

  async stop(): Promise<void> {
    for (const c of this.connections) c.destroy();
    await Promise.all(this.servers.map(({ server }) => new Promise<void>((r) => server.close(() => r()))));
    // Sockets systemd handed us (path '') stay: they belong to the socket unit.
    for (const { path } of this.servers) if (path !== '') rmSync(path, { force: true });
    this.servers.length = 0;
  }

  /** A listening socket passed by systemd socket activation (sd_listen_fds(3)). */
  private async adopt(fd: number, listener: Listener): Promise<void> {
    const server = this.createServer(listener);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ fd }, () => resolve());
    });
    this.servers.push({ server, path: '' });
    this.log.info('listening (socket activation)', { listener, fd });
  }

  private async listen(path: string, listener: Listener, mode: number): Promise<void> {
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    rmSync(path, { force: true }); // a stale socket from a crashed run
    const server = this.createServer(listener);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    chmodSync(path, mode);
    this.servers.push({ server, path });
    this.log.info('listening', { listener, path, mode: mode.toString(8) });
  }

  /**
   * A listener whose errors are logged, never thrown: an 'error' event nobody
   * listens to kills the process, and with it every container's upcalls
   * (accept() failing with EMFILE is one; net.Server keeps listening after it).
   */
  private createServer(listener: Listener): Server {
    const server = createServer((socket) => this.accept(socket, listener));
    server.on('error', (err) => this.log.error('listener error', { listener, error: String(err) }));
    return server;
  }

  private accept(socket: Socket, listener: Listener): void {
    // First of all: a peer may reset the connection at any moment (ECONNRESET, EPIPE).
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.log.debug('connection error', { listener, error: err.code ?? String(err) });
      socket.destroy();
    });
    let peer: PeerIdentity;
    let tenant: string;
    try {
      const fd = socketFd(socket);
      const cred = peerCred(this.libc, fd);
      const pidfd = peerPidfd(this.libc, fd, cred);
      peer = identifyPeer(listener, cred, pidfd, this.brokerUserns, this.proc);
    } catch (err) {
      this.log.warn('cannot identify peer; closing', { listener, error: BrokerError.from(err).toJSON() });
      socket.destroy();
      return;
    }
    try {
      // A peer that connected and already exited: its pidfd answers ESRCH. Never fatal.
      tenant = tenantKey(peer);
    } catch (err) {
      this.log.debug('peer exited before it was served; closing', { peerPid: peer.cred.pid, error: BrokerError.from(err).toJSON() });
      peer.pidfd.close();
      socket.destroy();
      return;
    }
    try {
      this.admission.connect(tenant);
    } catch (err) {
      this.log.warn('connection refused: over limit', { peerPid: peer.cred.pid, tenant, reason: BrokerError.from(err).message });
      peer.pidfd.close();
      // Answered and closed; a refused peer that neither reads nor closes is cut off within a second.
      endWithAnswer(socket, encodeFrame(errorResponse(null, err)));
      return;
    }
    this.connections.add(socket);
    socket.once('close', () => {
      this.connections.delete(socket);
      this.admission.disconnect(tenant);
      peer.pidfd.close();
    });
    new Connection(socket, this.limits, {
      admit: () => this.admission.admit(tenant),
      dispatch: (request) => this.dispatch(request, peer),
    }, this.log, tenant !== ADMIN_TENANT, this.clock);
  }

  private async dispatch(request: Request, peer: PeerIdentity): Promise<Response> {
    const entry = this.handlers.get(request.op);
    try {
      if (!entry) throw new BrokerError('E_BAD_REQUEST', `unknown op "${request.op}"`, { op: request.op });
      if (peer.listener === 'tenant' && !entry.tenant) {
        throw new BrokerError('E_PERMISSION', `op "${request.op}" is not available on the tenant socket`);
      }
      return okResponse(request.id, await entry.handler(request.params ?? {}, peer));
    } catch (err) {
      const e = BrokerError.from(err);
      if (e.code === 'E_INTERNAL') this.log.error('request failed', { op: request.op, error: e.toJSON(), stack: e.stack });
      return errorResponse(request.id, e);
    }
  }
}
