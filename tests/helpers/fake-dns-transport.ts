import * as dnsPacket from 'dns-packet';
import { type DnsProto, type DnsTransport, DnsTransportError } from '../../src/upcall/dns/dns-transport.js';

export type FakeBehaviour =
  | { answers: dnsPacket.Answer[] }
  | { rcode: 'NXDOMAIN' | 'SERVFAIL' | 'REFUSED' }
  | { timeout: true }
  | { truncateUdp: dnsPacket.Answer[] }
  | { garbage: true }
  | { wrongId: dnsPacket.Answer[] };

const RCODES = { NXDOMAIN: 3, SERVFAIL: 2, REFUSED: 5 } as const;

/** A scripted nameserver set for unit tests: `${server} ${qname} ${type}` -> behaviour; unknown = NXDOMAIN. */
export class FakeDnsTransport implements DnsTransport {
  readonly log: string[] = [];

  constructor(private readonly script: Record<string, FakeBehaviour>) {}

  async exchange(server: string, proto: DnsProto, query: Buffer): Promise<Buffer> {
    const q = dnsPacket.decode(query);
    const question = q.questions![0]!;
    const key = `${server} ${question.name} ${question.type}`;
    this.log.push(`${proto} ${key}`);
    const b = this.script[key] ?? this.script[`* ${question.name} ${question.type}`] ?? { rcode: 'NXDOMAIN' as const };
    if ('timeout' in b) throw new DnsTransportError('timeout', 'no reply');
    if ('garbage' in b) return Buffer.from('this is not a dns message at all');
    const base = { type: 'response' as const, id: q.id, questions: q.questions, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE };
    // dns-packet encodes the rcode from the low four bits of flags
    if ('rcode' in b) return dnsPacket.encode({ ...base, flags: base.flags | RCODES[b.rcode] });
    if ('wrongId' in b) return dnsPacket.encode({ ...base, id: ((q.id ?? 0) + 1) & 0xffff, answers: b.wrongId });
    if ('truncateUdp' in b) {
      if (proto === 'udp') return dnsPacket.encode({ ...base, flags: base.flags | dnsPacket.TRUNCATED_RESPONSE, answers: [] });
      return dnsPacket.encode({ ...base, answers: b.truncateUdp });
    }
    return dnsPacket.encode({ ...base, answers: b.answers });
  }
}

export const A = (name: string, address: string, ttl = 300): dnsPacket.Answer => ({ type: 'A', name, ttl, data: address });
export const AAAA = (name: string, address: string, ttl = 300): dnsPacket.Answer => ({ type: 'AAAA', name, ttl, data: address });
export const CNAME = (name: string, target: string, ttl = 300): dnsPacket.Answer => ({ type: 'CNAME', name, ttl, data: target });
