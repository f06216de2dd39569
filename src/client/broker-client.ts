import { connect, type Socket } from 'node:net';
import { BrokerError } from '../common/errors.js';
import type { RegistrationInfo } from '../common/types.js';
import { PROTOCOL_VERSION } from '../common/paths.js';
import { encodeFrame, FrameDecoder } from '../server/framing.js';
import { W } from '../common/wire-constants.js';

export const DEFAULT_ADMIN_SOCKET: string = W.UB_DEFAULT_SOCKET;

interface Pending {
  resolve(value: unknown): void;
  reject(err: BrokerError): void;
}

/**
 * Typed client for the broker's socket protocol, for filesystem helpers written
 * in TypeScript and for the CLI. One connection, many requests by id.
 */
export class BrokerClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly decoder = new FrameDecoder(16 * 1024 * 1024);
  /** Why the broker is closing this connection, when it said (an answer with id null: E_BUSY over a limit, E_PROTOCOL). */
  private refusal: BrokerError | null = null;
  private closed = false;

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('close', () => {
      this.closed = true;
      this.failAll(this.refusal ?? new BrokerError('E_UNAVAILABLE', 'broker closed the connection'));
    });
    socket.on('error', () => undefined); // 'close' follows and fails what is pending
  }

  static connect(path = DEFAULT_ADMIN_SOCKET, timeoutMs = 5000): Promise<BrokerClient> {
    return new Promise((resolve, reject) => {
      const socket = connect(path);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new BrokerError('E_UNAVAILABLE', `timed out connecting to ${path}`));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(new BrokerClient(socket));
      });
      socket.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new BrokerError('E_UNAVAILABLE', `cannot connect to broker at ${path}: ${err.code ?? err.message}`, { path }));
      });
    });
  }

  request<T = unknown>(op: string, params: Record<string, unknown> = {}): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      if (this.closed) {
        reject(this.refusal ?? new BrokerError('E_UNAVAILABLE', 'broker closed the connection'));
        return;
      }
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.socket.write(encodeFrame({ v: PROTOCOL_VERSION, id, op, params }));
    });
  }

  /** Register a mount of the calling process's container (the broker learns the container from the kernel). */
  register(mountpoint: string, options: { fstype?: string; source?: string } = {}): Promise<RegistrationInfo> {
    return this.request<RegistrationInfo>('register', { mountpoint, ...options });
  }

  unregister(id: string): Promise<{ id: string; removed: true }> {
    return this.request('unregister', { id });
  }

  list(): Promise<RegistrationInfo[]> {
    return this.request<RegistrationInfo[]>('list');
  }

  show(selector: { id: string } | { mountId: number } | { path: string }): Promise<RegistrationInfo> {
    return this.request<RegistrationInfo>('show', selector);
  }

  ping(): Promise<{ version: string; protocol: number; peer: { listener: string; pid: number; uid: number; gid: number } }> {
    return this.request('ping');
  }

  close(): void {
    this.socket.end();
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    let frames: Buffer[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.failAll(BrokerError.from(err));
      this.socket.destroy();
      return;
    }
    for (const frame of frames) {
      const msg = JSON.parse(frame.toString('utf8')) as { id: unknown; ok: boolean; result?: unknown; error?: unknown };
      if (msg.id === null && !msg.ok) this.refusal = BrokerError.fromJSON(msg.error);
      const waiter = typeof msg.id === 'number' ? this.pending.get(msg.id) : undefined;
      if (!waiter) continue;
      this.pending.delete(msg.id as number);
      if (msg.ok) waiter.resolve(msg.result);
      else waiter.reject(BrokerError.fromJSON(msg.error));
    }
  }

  private failAll(err: BrokerError): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}
