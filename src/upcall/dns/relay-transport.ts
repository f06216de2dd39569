import { BrokerError, errnoName } from '../../common/errors.js';
import { encodeLengthFrame, LengthFrameDecoder } from '../../common/frame.js';
import { W } from '../../common/wire-constants.js';
import { type DnsProto, type DnsTransport, DnsTransportError } from './dns-transport.js';

/** Sizes the relay enforces (native-bindings/include/ub-wire.h). */
export const RELAY_MAX_FILE = W.UB_NETRELAY_MAX_FILE;

export type FileReply = { ok: true; text: string } | { ok: false; errno: string };

/** The request frame asking the relay for one file. */
export function fileRequest(path: string): Buffer {
  return encodeLengthFrame(Buffer.from('F'), Buffer.from(path, 'utf8'));
}

/** The frames asking for several files, made once per list (PREFETCH is one constant list). */
const fileRequestsOf = new WeakMap<readonly string[], Buffer>();
export function fileRequests(paths: readonly string[]): Buffer {
  let frames = fileRequestsOf.get(paths);
  if (frames === undefined) {
    frames = Buffer.concat(paths.map(fileRequest));
    fileRequestsOf.set(paths, frames);
  }
  return frames;
}

function toFileReply(reply: Buffer): FileReply {
  const status = reply[0]!;
  return status === 0 ? { ok: true, text: reply.subarray(1).toString('utf8') } : { ok: false, errno: errnoName(status) };
}

/**
 * The broker's end of the netrelay builtin (native-bindings/include/netrelay.h): a
 * child running inside the container reads its resolver files and relays DNS
 * messages from its network namespace. The relay answers requests one at a
 * time, in order, so requests are pipelined: each is written at once and the
 * replies are matched to them in order.
 *
 * `prefetched` names files whose requests were already written (with the
 * spawn frame): their replies come first, and readFile() of such a path takes
 * the reply already asked for. A relay kept between upcalls (RelayPool) is
 * reusable only while `settled`: nothing asked and unanswered, nothing
 * prefetched and unclaimed, not failed.
 */
export class RelayTransport implements DnsTransport {
  /** Replies: a status byte, then the payload (a file's text, a DNS message). */
  private readonly decoder = new LengthFrameDecoder({ minFrame: 1, maxFrame: RELAY_MAX_FILE + 1, what: 'relay reply' });
  /** Replies read but not yet taken by a waiter (the reader registers before writing, so at most a moment). */
  private readonly replies: Buffer[] = [];
  private readonly waiters: Array<{ resolve: (b: Buffer) => void; reject: (e: Error) => void }> = [];
  private readonly early = new Map<string, Promise<FileReply>>();
  private ended: Error | null = null;

  constructor(private readonly input: NodeJS.WritableStream, output: NodeJS.ReadableStream, prefetched: readonly string[] = []) {
    for (const path of prefetched) this.expect(path);
    output.on('data', (chunk: Buffer) => this.onData(chunk));
    output.on('end', () => this.fail(new BrokerError('E_SPAWN', 'the in-container relay exited')));
    output.on('error', (err: Error) => this.fail(err));
  }

  /** True while the relay can take another upcall: nothing in flight or unclaimed, and it has not failed. */
  get settled(): boolean {
    return this.ended === null && this.waiters.length === 0 && this.early.size === 0;
  }

  /** Why it cannot serve any more, once it cannot. */
  get failure(): Error | null {
    return this.ended;
  }

  /** Ask for these files now, all at once; readFile() of each takes its reply. */
  prefetch(paths: readonly string[]): void {
    if (this.ended) return;
    for (const path of paths) this.expect(path); // waiting before the replies can come
    this.input.write(fileRequests(paths));
  }

  /** Read a resolver file inside the container (regular files only, at most 1 MiB). */
  readFile(path: string): Promise<FileReply> {
    const reply = this.early.get(path);
    if (reply) {
      this.early.delete(path);
      return reply;
    }
    return this.call(Buffer.from('F'), Buffer.from(path, 'utf8')).then(toFileReply);
  }

  async exchange(server: string, proto: DnsProto, query: Buffer, timeoutMs: number): Promise<Buffer> {
    const head = Buffer.alloc(9);
    head.write('Q', 0);
    head.writeUInt8(proto === 'udp' ? 0 : 1, 1);
    head.writeUInt16BE(53, 2);
    head.writeUInt32BE(timeoutMs, 4);
    const addr = Buffer.from(server, 'latin1');
    head.writeUInt8(addr.length, 8);
    const reply = await this.call(head, addr, query);
    const status = reply[0]!;
    if (status === 0) return reply.subarray(1);
    const name = errnoName(status);
    const kind = name === 'ETIMEDOUT' ? 'timeout' : name === 'ECONNREFUSED' ? 'refused' : /UNREACH/.test(name) ? 'unreachable' : 'failed';
    throw new DnsTransportError(kind, `${proto} ${server}: ${name}`);
  }

  close(): void {
    this.input.end();
  }

  /** The reply to a request already written, as a file reply kept for readFile(path). */
  private expect(path: string): void {
    const reply = this.waitReply().then(toFileReply);
    reply.catch(() => undefined); // a reply nobody claims may fail unobserved
    this.early.set(path, reply);
  }

  private call(...body: Buffer[]): Promise<Buffer> {
    if (this.ended) return Promise.reject(this.ended);
    const reply = this.waitReply();
    this.input.write(encodeLengthFrame(...body));
    return reply;
  }

  private waitReply(): Promise<Buffer> {
    if (this.ended) return Promise.reject(this.ended);
    return new Promise<Buffer>((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.deliver();
    });
  }

  private onData(chunk: Buffer): void {
    if (this.ended) return;
    try {
      for (const reply of this.decoder.push(chunk)) this.replies.push(Buffer.from(reply));
    } catch (err) {
      this.fail(err as Error); // a length out of bounds: the stream cannot be followed any more
      return;
    }
    this.deliver();
  }

  private deliver(): void {
    while (this.waiters.length > 0 && this.replies.length > 0) this.waiters.shift()!.resolve(this.replies.shift()!);
    // Output nobody asked for: the relay (or whoever wrote into its pipe or socket) is out of step; never reuse it.
    if (this.waiters.length === 0 && (this.replies.length > 0 || this.decoder.pending > 0)) this.fail(new BrokerError('E_PROTOCOL', 'relay sent a reply nobody asked for'));
  }

  private fail(err: Error): void {
    this.ended ??= err;
    for (const w of this.waiters.splice(0)) w.reject(err);
  }
}
