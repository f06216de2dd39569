import { isIP } from 'node:net';

/**
 * The kernel's binary "server list, version 1" payload for dns_resolver keys
 * (include/uapi/linux/dns_resolver.h), asked for by AFS with the `srv=1`
 * callout option. All multi-byte fields are little-endian; there is no NUL
 * terminator (the leading zero byte marks the payload as binary).
 */
export const DNS_RECORD_SOURCE = { UNAVAILABLE: 0, CONFIG: 1, DNS_A: 2, DNS_AFSDB: 3, DNS_SRV: 4, NSS: 5 } as const;
export const DNS_LOOKUP_STATUS = {
  NOT_DONE: 0, GOOD: 1, GOOD_WITH_BAD: 2, BAD: 3, GOT_NOT_FOUND: 4, GOT_LOCAL_FAILURE: 5, GOT_TEMP_FAILURE: 6, GOT_NS_FAILURE: 7,
} as const;
export const DNS_SERVER_PROTOCOL = { UNSPECIFIED: 0, UDP: 1, TCP: 2 } as const;
const DNS_PAYLOAD_IS_SERVER_LIST = 0;
const DNS_ADDRESS_IS_IPV4 = 0;
const DNS_ADDRESS_IS_IPV6 = 1;

export interface ServerEntry {
  name: string;
  priority: number;
  weight: number;
  port: number;
  source: number;
  status: number;
  protocol: number;
  addresses: string[];
}

export interface ServerList {
  source: number;
  status: number;
  servers: ServerEntry[];
}

export function encodeServerListV1(list: ServerList): Buffer {
  const parts: Buffer[] = [Buffer.from([0, DNS_PAYLOAD_IS_SERVER_LIST, 1, list.source, list.status, Math.min(list.servers.length, 255)])];
  for (const s of list.servers.slice(0, 255)) {
    const name = Buffer.from(s.name, 'utf8');
    const head = Buffer.alloc(12);
    head.writeUInt16LE(name.length, 0);
    head.writeUInt16LE(s.priority, 2);
    head.writeUInt16LE(s.weight, 4);
    head.writeUInt16LE(s.port, 6);
    head.writeUInt8(s.source, 8);
    head.writeUInt8(s.status, 9);
    head.writeUInt8(s.protocol, 10);
    head.writeUInt8(Math.min(s.addresses.length, 255), 11);
    parts.push(head, name);
    for (const a of s.addresses.slice(0, 255)) parts.push(encodeAddress(a));
  }
  return Buffer.concat(parts);
}

function encodeAddress(address: string): Buffer {
  if (isIP(address) === 4) return Buffer.from([DNS_ADDRESS_IS_IPV4, ...address.split('.').map(Number)]);
  const out = Buffer.alloc(17);
  out[0] = DNS_ADDRESS_IS_IPV6;
  const [head, tail] = address.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined ? [] : tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  groups.forEach((g, i) => out.writeUInt16BE(Number.parseInt(g, 16), 1 + 2 * i));
  return out;
}

/** The inverse, for tests and for `resolve --json`; throws on anything malformed. */
export function decodeServerListV1(buf: Buffer): ServerList {
  if (buf.length < 6 || buf[0] !== 0 || buf[1] !== DNS_PAYLOAD_IS_SERVER_LIST || buf[2] !== 1) throw new Error('not a v1 server list');
  const list: ServerList = { source: buf[3]!, status: buf[4]!, servers: [] };
  let off = 6;
  for (let i = 0; i < buf[5]!; i++) {
    if (off + 12 > buf.length) throw new Error('truncated server record');
    const nameLen = buf.readUInt16LE(off);
    const s: ServerEntry = {
      name: '', priority: buf.readUInt16LE(off + 2), weight: buf.readUInt16LE(off + 4), port: buf.readUInt16LE(off + 6),
      source: buf[off + 8]!, status: buf[off + 9]!, protocol: buf[off + 10]!, addresses: [],
    };
    const nAddrs = buf[off + 11]!;
    off += 12;
    s.name = buf.subarray(off, off + nameLen).toString('utf8');
    off += nameLen;
    for (let j = 0; j < nAddrs; j++) {
      const kind = buf[off];
      const len = kind === DNS_ADDRESS_IS_IPV4 ? 4 : kind === DNS_ADDRESS_IS_IPV6 ? 16 : -1;
      if (len < 0 || off + 1 + len > buf.length) throw new Error('bad address record');
      const bytes = buf.subarray(off + 1, off + 1 + len);
      s.addresses.push(len === 4 ? [...bytes].join('.') : ipv6ToString(bytes));
      off += 1 + len;
    }
    list.servers.push(s);
  }
  if (off !== buf.length) throw new Error('trailing bytes after server list');
  return list;
}

function ipv6ToString(bytes: Buffer): string {
  const groups = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(2 * i).toString(16)).join(':');
  return new URL(`http://[${groups}]/`).hostname.slice(1, -1);
}
