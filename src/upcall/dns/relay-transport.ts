import { BrokerError } from '../../common/errors.js';
import { errnoName } from '../../common/errors.js';
import { type DnsProto, type DnsTransport, DnsTransportError } from './dns-transport.js';

/** Sizes the relay enforces (native-bindings/netrelay.h). */
export const RELAY_MAX_FILE = 1024 * 1024;

/**
 * The broker's end of the netrelay builtin (native-bindings/netrelay.h): a
 * child running inside the container reads its resolver files and relays DNS
 * messages from its network namespace. One request at a time, in order.
 */
export class RelayTransport implements DnsTransport {
  private buffered = Buffer.alloc(0);
  private waiter: { resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private ended: Error | null = null;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly input: NodeJS.WritableStream, output: NodeJS.ReadableStream) {
    output.on('data', (chunk: Buffer) => this.onData(chunk));
    output.on('end', () => this.fail(new BrokerError('E_SPAWN', 'the in-container relay exited')));
    output.on('error', (err: Error) => this.fail(err));
  }

  /** Read a resolver file inside the container (regular files only, at most 1 MiB). */
  async readFile(path: string): Promise<{ ok: true; text: string } | { ok: false; errno: string }> {
    const reply = await this.call(Buffer.concat([Buffer.from('F'), Buffer.from(path, 'utf8')]));
    const status = reply[0]!;
    return status === 0 ? { ok: true, text: reply.subarray(1).toString('utf8') } : { ok: false, errno: errnoName(status) };
  }

  async exchange(server: string, proto: DnsProto, query: Buffer, timeoutMs: number): Promise<Buffer> {
    const head = Buffer.alloc(9);
    head.write('Q', 0);
    head.writeUInt8(proto === 'udp' ? 0 : 1, 1);
    head.writeUInt16BE(53, 2);
    head.writeUInt32BE(timeoutMs, 4);
    const addr = Buffer.from(server, 'latin1');
    head.writeUInt8(addr.length, 8);
    const reply = await this.call(Buffer.concat([head, addr, query]));
    const status = reply[0]!;
    if (status === 0) return reply.subarray(1);
    const name = errnoName(status);
    const kind = name === 'ETIMEDOUT' ? 'timeout' : name === 'ECONNREFUSED' ? 'refused' : /UNREACH/.test(name) ? 'unreachable' : 'failed';
    throw new DnsTransportError(kind, `${proto} ${server}: ${name}`);
  }

  close(): void {
    this.input.end();
  }

  private call(body: Buffer): Promise<Buffer> {
    const run = async (): Promise<Buffer> => {
      if (this.ended) throw this.ended;
      const len = Buffer.alloc(4);
      len.writeUInt32BE(body.length, 0);
      const reply = new Promise<Buffer>((resolve, reject) => (this.waiter = { resolve, reject }));
      this.input.write(Buffer.concat([len, body]));
      this.deliver();
      return reply;
    };
    const next = this.chain.then(run, run);
    this.chain = next.catch(() => undefined);
    return next;
  }

  private onData(chunk: Buffer): void {
    this.buffered = Buffer.concat([this.buffered, chunk]);
    this.deliver();
  }

  private deliver(): void {
    if (!this.waiter || this.buffered.length < 4) return;
    const len = this.buffered.readUInt32BE(0);
    if (len < 1 || len > RELAY_MAX_FILE + 1) {
      this.fail(new BrokerError('E_PROTOCOL', `relay sent a frame of ${len} bytes`));
      return;
    }
    if (this.buffered.length < 4 + len) return;
    const frame = this.buffered.subarray(4, 4 + len);
    this.buffered = this.buffered.subarray(4 + len);
    const w = this.waiter;
    this.waiter = null;
    w.resolve(Buffer.from(frame));
  }

  private fail(err: Error): void {
    this.ended ??= err;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(err);
  }
}
