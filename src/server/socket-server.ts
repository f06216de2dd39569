import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { inject, injectable } from 'inversify';
import { BrokerError } from '../common/errors.js';
import { BrokerConfig, LoggerFactory, type Logger } from '../common/tokens.js';
import { Libc } from '../ns/libc.js';
import { peerPidfd, peerCred, socketFd } from '../ns/peer.js';
import { encodeFrame, FrameDecoder } from './framing.js';
import { Admission, DEFAULT_LIMITS, TokenBucket } from './limits.js';
import type { Listener, PeerIdentity } from './peer-identity.js';
import { errorResponse, okResponse, parseRequest, type Request } from './protocol.js';
import { RequestHandlers } from './request-handlers.js';

const SD_LISTEN_FDS_START = 3;
const ADMIN_TENANT = 'admin';

/**
 * LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES from systemd: fds 3.. are listening
 * sockets, named "admin"/"tenant" by the socket unit's FileDescriptorName=
 * (unnamed: the first is admin, the second tenant). The variables are removed
 * so children do not inherit them, as sd_listen_fds(1) does.
 */
/**
 * One container, as far as fairness goes: the peer's user and pid namespaces.
 * Root on the admin socket (host tools, and the request-key handler the kernel
 * starts once per upcall, for every container at once) is not a tenant: only
 * the global limits apply to it.
 */
function tenantKey(peer: PeerIdentity): string {
  if (peer.listener === 'admin' && peer.cred.uid === 0) return ADMIN_TENANT;
  using user = peer.pidfd.namespace('user');
  using pid = peer.pidfd.namespace('pid');
  return `${user.identity().ino}:${pid.identity().ino}`;
}

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
  private readonly limits;
  private readonly admission;

  constructor(
    @inject(BrokerConfig) private readonly config: BrokerConfig,
    @inject(RequestHandlers) private readonly handlers: RequestHandlers,
    @inject(Libc) private readonly libc: Libc,
    @inject(LoggerFactory) loggers: LoggerFactory,
  ) {
    this.log = loggers.get('server:SocketServer');
    this.limits = { ...DEFAULT_LIMITS, ...config.limits };
    this.admission = new Admission(this.limits, new Set([ADMIN_TENANT]));
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
    const server = createServer((socket) => this.accept(socket, listener));
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
    const server = createServer((socket) => this.accept(socket, listener));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    chmodSync(path, mode);
    this.servers.push({ server, path });
    this.log.info('listening', { listener, path, mode: mode.toString(8) });
  }

  private accept(socket: Socket, listener: Listener): void {
    let peer: PeerIdentity;
    let tenant: string;
    try {
      const fd = socketFd(socket);
      peer = { listener, cred: peerCred(this.libc, fd), pidfd: peerPidfd(this.libc, fd) };
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
      socket.end(encodeFrame(errorResponse(null, err)));
      peer.pidfd.close();
      return;
    }
    this.connections.add(socket);
    socket.once('close', () => {
      this.connections.delete(socket);
      this.admission.disconnect(tenant);
      peer.pidfd.close();
    });
    socket.on('error', () => socket.destroy());
    this.serve(socket, peer, tenant);
  }

  private serve(socket: Socket, peer: PeerIdentity, tenant: string): void {
    const decoder = new FrameDecoder(this.limits.maxMessageBytes);
    const bucket = new TokenBucket(this.limits.messagesPerSecond, this.limits.messageBurst, performance.now());
    let inFlight = 0;
    socket.on('data', (chunk: Buffer) => {
      let frames: Buffer[];
      try {
        frames = decoder.push(chunk);
      } catch (err) {
        socket.end(encodeFrame(errorResponse(null, err)));
        return;
      }
      for (const body of frames) {
        const { id, request, error } = parseRequest(body);
        if (!request) {
          this.reply(socket, errorResponse(id, error));
          continue;
        }
        let release: () => void;
        try {
          if (!bucket.take(performance.now())) throw new BrokerError('E_BUSY', 'message rate limit reached; slow down');
          if (inFlight >= this.limits.connectionInFlight) throw new BrokerError('E_BUSY', 'too many requests in flight on this connection');
          release = this.admission.admit(tenant);
        } catch (err) {
          this.reply(socket, errorResponse(id, err));
          continue;
        }
        inFlight++;
        void this.dispatch(request, peer).then((response) => {
          inFlight--;
          release();
          this.reply(socket, response);
        });
      }
    });
  }

  private async dispatch(request: Request, peer: PeerIdentity) {
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

  private reply(socket: Socket, response: unknown): void {
    if (!socket.destroyed && socket.writable) socket.write(encodeFrame(response));
  }
}
