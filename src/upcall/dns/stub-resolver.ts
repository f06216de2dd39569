import { randomInt } from 'node:crypto';
import * as dnsPacket from 'dns-packet';
import type { ResolvConf } from './resolv-conf.js';
import { candidateNames } from './resolv-conf.js';
import { type DnsTransport, DnsTransportError } from './dns-transport.js';

export type RecordType = 'A' | 'AAAA' | 'SRV' | 'AFSDB';
/** glibc's h_errno classes, which keyutils maps to key errors and timeouts. */
export type DnsStatus = 'ok' | 'nxdomain' | 'nodata' | 'tryagain' | 'norecovery';

export interface DnsRecord {
  name: string;
  type: RecordType;
  ttl: number;
  data: unknown;
}

export interface LookupResult {
  status: DnsStatus;
  records: DnsRecord[];
  /** Minimum TTL over the CNAME chain and the records; null when nothing was found. */
  ttl: number | null;
  /** The nameserver that answered, and the name that matched. */
  server: string | null;
  name: string | null;
}

type Reply = { status: DnsStatus; records: DnsRecord[]; ttl: number | null; server: string };

const MAX_CNAME_HOPS = 16;
const MAX_REPLY = 65535;

/**
 * A stub resolver that behaves like glibc's (res_search over res_send), with
 * the DNS codec from dns-packet: search list and ndots, every nameserver in
 * turn (or rotated), `attempts` rounds, `timeout` per try, TCP when a UDP reply
 * is truncated, replies validated (id, QR, question), CNAME chains followed.
 */
export class StubResolver {
  private rotation = 0;

  constructor(private readonly conf: ResolvConf, private readonly transport: DnsTransport) {}

  async lookup(name: string, type: RecordType): Promise<LookupResult> {
    let sawNodata = false;
    let sawServfail = false;
    let last: DnsStatus = 'nxdomain';
    for (const candidate of candidateNames(name, this.conf)) {
      const reply = await this.queryAllServers(candidate, type);
      if (reply.status === 'ok') return { ...reply, name: candidate };
      if (reply.status === 'nodata') sawNodata = true;
      if (reply.status === 'tryagain' && reply.server !== '') sawServfail = true;
      last = reply.status;
      // glibc stops searching on a timeout (no server answered): trying more names would only wait more.
      if (reply.status === 'tryagain' && reply.server === '') break;
    }
    const status: DnsStatus = sawNodata ? 'nodata' : sawServfail ? 'tryagain' : last;
    return { status, records: [], ttl: null, server: null, name: null };
  }

  private async queryAllServers(qname: string, type: RecordType): Promise<Reply> {
    const servers = this.serverOrder();
    let outcome: Reply = { status: 'tryagain', records: [], ttl: null, server: '' };
    for (let attempt = 0; attempt < this.conf.attempts; attempt++) {
      for (const server of servers) {
        const reply = await this.queryOne(server, qname, type);
        if (reply === null) continue; // no usable answer from this server this time
        if (reply.status === 'ok' || reply.status === 'nxdomain' || reply.status === 'nodata') return reply;
        outcome = reply; // SERVFAIL / REFUSED: try the next server
      }
    }
    return outcome;
  }

  private serverOrder(): string[] {
    const list = this.conf.nameservers;
    if (!this.conf.rotate || list.length < 2) return list;
    const start = this.rotation++ % list.length;
    return [...list.slice(start), ...list.slice(0, start)];
  }

  /** One exchange with one server (UDP, then TCP if truncated); null when it gave nothing usable. */
  private async queryOne(server: string, qname: string, type: RecordType): Promise<Reply | null> {
    const id = randomInt(0, 65536);
    const query = dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name: qname, class: 'IN' }] });
    const timeoutMs = this.conf.timeoutSeconds * 1000;
    try {
      let packet = validate(await this.transport.exchange(server, 'udp', query, timeoutMs), id, qname, type);
      if (packet && (packet.flags ?? 0) & dnsPacket.TRUNCATED_RESPONSE) {
        packet = validate(await this.transport.exchange(server, 'tcp', query, timeoutMs), id, qname, type);
      }
      return packet ? interpret(packet, qname, type, server) : null;
    } catch (err) {
      if (err instanceof DnsTransportError) return null;
      throw err;
    }
  }
}

/** Decode and check a reply belongs to our query; anything else is dropped like a stray datagram. */
function validate(reply: Buffer, id: number, qname: string, type: RecordType): dnsPacket.Packet | null {
  if (reply.length < 12 || reply.length > MAX_REPLY) return null;
  let packet: dnsPacket.Packet;
  try {
    packet = dnsPacket.decode(reply);
  } catch {
    return null;
  }
  const q = packet.questions?.[0];
  if (packet.id !== id || packet.type !== 'response' || packet.questions?.length !== 1 || !q) return null;
  if (q.name.toLowerCase() !== qname.toLowerCase() || q.type !== type) return null;
  return packet;
}

function interpret(packet: dnsPacket.Packet, qname: string, type: RecordType, server: string): Reply {
  const rcode = (packet as { rcode?: string }).rcode ?? 'NOERROR';
  if (rcode === 'NXDOMAIN') return { status: 'nxdomain', records: [], ttl: null, server };
  if (rcode === 'SERVFAIL') return { status: 'tryagain', records: [], ttl: null, server };
  if (rcode !== 'NOERROR') return { status: 'norecovery', records: [], ttl: null, server };
  const answers = (packet.answers ?? []) as Array<{ name: string; type: string; ttl?: number; data: unknown }>;
  let target = qname.toLowerCase();
  let ttl = Infinity;
  for (let hop = 0; hop < MAX_CNAME_HOPS; hop++) {
    const cname = answers.find((a) => a.type === 'CNAME' && a.name.toLowerCase() === target);
    if (!cname) break;
    ttl = Math.min(ttl, cname.ttl ?? 0);
    target = String(cname.data).toLowerCase().replace(/\.$/, '');
  }
  const records = answers.filter((a) => a.type === type && a.name.toLowerCase() === target)
    .map((a) => ({ name: a.name, type, ttl: a.ttl ?? 0, data: a.data }));
  if (records.length === 0) return { status: 'nodata', records: [], ttl: null, server };
  for (const r of records) ttl = Math.min(ttl, r.ttl);
  return { status: 'ok', records, ttl, server };
}
