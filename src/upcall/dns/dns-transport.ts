/**
 * How DNS messages reach a nameserver. In production the transport is a relay
 * child running inside the container's network namespace (the packets leave
 * from the container, never from the host); unit tests use a fake.
 */
export type DnsProto = 'udp' | 'tcp';

export class DnsTransportError extends Error {
  constructor(readonly kind: 'timeout' | 'refused' | 'unreachable' | 'failed', message: string) {
    super(message);
  }
}

export interface DnsTransport {
  /** Send one query to `server` port 53; resolve with the first reply (unvalidated) or throw DnsTransportError. */
  exchange(server: string, proto: DnsProto, query: Buffer, timeoutMs: number): Promise<Buffer>;
}
