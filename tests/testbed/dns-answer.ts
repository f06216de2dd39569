/**
 * Pure answer logic of the test DNS server: given the configuration and one
 * question, decide what to reply. Kept free of sockets so it is easy to read
 * and to unit-test; the wire encoding is dns-packet's.
 */
import * as dnsPacket from 'dns-packet';
import type { Answer, Question } from 'dns-packet';
import { DEFAULT_TTL, normalizeName } from './dns-types.js';
import type { DnsRecord, DnsServerConfig, NameBehaviour } from './dns-types.js';

/** RFC 1035 rcodes; dns-packet carries them in the low 4 bits of `flags`. */
export const RCODE = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;
export type RcodeName = keyof typeof RCODE;

export type Verdict =
  | { readonly kind: 'reply'; readonly rcode: RcodeName; readonly answers: Answer[]; readonly truncateUdp: boolean }
  | { readonly kind: 'drop' }
  /** Hostile servers: bytes that are no DNS message, or a real answer under another id. */
  | { readonly kind: 'garbage' }
  | { readonly kind: 'wrongid'; readonly answers: Answer[] };

/**
 * dns-packet has no AFSDB codec (it passes the RDATA through as a Buffer), but
 * it does export its domain-name codec at runtime without typing it. AFSDB
 * RDATA is a 16-bit subtype followed by an uncompressed name, so the library's
 * name codec is all we need.
 */
interface NameCodec {
  encode(name: string): Buffer;
  decode(buf: Buffer, offset?: number): string;
}
const nameCodec = (dnsPacket as unknown as { name: NameCodec }).name;

export function encodeAfsdbData(subtype: number, hostname: string): Buffer {
  const head = Buffer.alloc(2);
  head.writeUInt16BE(subtype);
  return Buffer.concat([head, nameCodec.encode(hostname)]);
}

export function decodeAfsdbData(data: Buffer): { subtype: number; hostname: string } {
  return { subtype: data.readUInt16BE(0), hostname: nameCodec.decode(data, 2) };
}

function toAnswer(r: DnsRecord): Answer {
  const base = { name: r.name.replace(/\.$/, ''), ttl: r.ttl ?? DEFAULT_TTL, class: 'IN' as const };
  switch (r.type) {
    case 'A':
    case 'AAAA':
      return { ...base, type: r.type, data: r.address };
    case 'CNAME':
      return { ...base, type: 'CNAME', data: r.target };
    case 'SRV':
      return {
        ...base,
        type: 'SRV',
        data: { target: r.target, port: r.port, priority: r.priority ?? 0, weight: r.weight ?? 0 },
      };
    case 'AFSDB':
      return { ...base, type: 'AFSDB', data: encodeAfsdbData(r.subtype, r.hostname) };
  }
}

function findBehaviour(config: DnsServerConfig, name: string, type: string): NameBehaviour | undefined {
  return config.behaviours.find(
    (b) => normalizeName(b.name) === name && (b.types === undefined || b.types.includes(type)),
  );
}

/** Limit on CNAME chain length, so a looping configuration cannot hang the server. */
const MAX_CNAME_CHAIN = 8;

/**
 * Records answering (name, type), following CNAMEs inside our own data the
 * way an authoritative server does. `null` means the name does not exist.
 */
function lookup(records: readonly DnsRecord[], qname: string, qtype: string): DnsRecord[] | null {
  const answers: DnsRecord[] = [];
  let name = qname;
  for (let hop = 0; hop < MAX_CNAME_CHAIN; hop++) {
    const owned = records.filter((r) => normalizeName(r.name) === name);
    if (owned.length === 0) return hop === 0 ? null : answers;
    const exact = owned.filter((r) => r.type === qtype);
    if (exact.length > 0) return [...answers, ...exact];
    const cname = owned.find((r) => r.type === 'CNAME');
    if (!cname || cname.type !== 'CNAME') return answers; // name exists, no data of that type
    answers.push(cname);
    name = normalizeName(cname.target);
  }
  return answers;
}

export function decide(config: DnsServerConfig, question: Question): Verdict {
  const name = normalizeName(question.name);
  const behaviour = findBehaviour(config, name, question.type);
  switch (behaviour?.kind) {
    case 'noanswer':
      return { kind: 'drop' };
    case 'servfail':
      return { kind: 'reply', rcode: 'SERVFAIL', answers: [], truncateUdp: false };
    case 'refused':
      return { kind: 'reply', rcode: 'REFUSED', answers: [], truncateUdp: false };
    case 'garbage':
      return { kind: 'garbage' };
    case 'wrongid':
      return { kind: 'wrongid', answers: (lookup(config.records, name, question.type) ?? []).map(toAnswer) };
    case 'truncate':
    case undefined:
      break;
  }
  const found = lookup(config.records, name, question.type);
  return {
    kind: 'reply',
    rcode: found === null ? 'NXDOMAIN' : 'NOERROR',
    answers: (found ?? []).map(toAnswer),
    truncateUdp: behaviour?.kind === 'truncate',
  };
}
