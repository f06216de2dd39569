import { BrokerError } from '../../common/errors.js';
import { lookupHosts } from './hosts-file.js';
import { type DnsStatus, type LookupResult, type StubResolver } from './stub-resolver.js';
import { DNS_LOOKUP_STATUS, DNS_RECORD_SOURCE, DNS_SERVER_PROTOCOL, encodeServerListV1, type ServerEntry } from './server-list-v1.js';

/** keyutils' default expiry when no TTL exists (hosts file): key.dns_resolver's key_expiry. */
export const DEFAULT_EXPIRY_SECONDS = 5;

/** keyutils' nsError(): h_errno class -> (errno in the key, negative-key timeout). */
const FAILURE: Record<Exclude<DnsStatus, 'ok'>, { errno: number; timeout: number }> = {
  tryagain: { errno: 11 /* EAGAIN */, timeout: 1 },
  norecovery: { errno: 111 /* ECONNREFUSED */, timeout: 10 },
  nxdomain: { errno: 61 /* ENODATA */, timeout: 60 },
  nodata: { errno: 61 /* ENODATA */, timeout: 60 },
};

export interface AddressSource {
  address: string;
  /** "hosts", or the nameserver that answered. */
  from: string;
  ttl: number | null;
}

export interface DnsKeyResult {
  /** The exact bytes for the kernel: text with its trailing NUL, or the binary v1 server list. */
  payload: Buffer;
  text: string | null;
  expirySeconds: number;
  dnserror: number | null;
  status: DnsStatus;
  sources: AddressSource[];
}

interface Options {
  families: Array<4 | 6>;
  one: boolean;
  srv: number | null;
}

/**
 * Callout options as key.dns_resolver (keyutils 1.6.3) reads them: none at all
 * is the legacy mode (one IPv4 address); otherwise both families and one
 * address, narrowed by `ipv4`/`ipv6` and widened by `list`. `srv=N` asks AFS's
 * binary server list version N.
 */
export function parseCallout(callout: string): Options {
  if (callout.trim() === '') return { families: [4], one: true, srv: null };
  const o: Options = { families: [4, 6], one: true, srv: null };
  for (const word of callout.split(' ').filter(Boolean)) {
    if (word.includes(',')) throw new BrokerError('E_BAD_REQUEST', `callout option "${word}" contains a comma`);
    const [k, v] = word.split('=');
    if (k === 'ipv4') o.families = [4];
    else if (k === 'ipv6') o.families = [6];
    else if (k === 'list') o.one = false;
    else if (k === 'srv' && v !== undefined && /^\d+$/.test(v)) o.srv = Number(v);
  }
  return o;
}

/** `name`, `a:name`, `aaaa:name` (all three: addresses, per the callout) or `afsdb:cell`. */
export function parseDescription(description: string): { kind: 'address' | 'afsdb'; name: string } {
  const colon = description.indexOf(':');
  const [prefix, name] = colon < 0 ? ['', description] : [description.slice(0, colon), description.slice(colon + 1)];
  if (name === '' || name.length > 255 || /[\s\0,]/.test(name)) throw new BrokerError('E_BAD_REQUEST', `bad dns_resolver description "${description}"`);
  if (prefix === '' || prefix === 'a' || prefix === 'aaaa') return { kind: 'address', name };
  if (prefix === 'afsdb') return { kind: 'afsdb', name };
  throw new BrokerError('E_BAD_REQUEST', `query type "${prefix}" is not supported`);
}

export async function resolveDnsKey(description: string, callout: string, hosts: string, resolver: StubResolver): Promise<DnsKeyResult> {
  const what = parseDescription(description);
  const options = parseCallout(callout);
  if (what.kind === 'afsdb') return resolveAfs(what.name, options, hosts, resolver);
  const found = await addressesOf(what.name, options.families, hosts, resolver);
  if (found.status !== 'ok') return failure(found.status);
  const sources = options.one ? found.sources.slice(0, 1) : found.sources;
  const text = sources.map((s) => s.address).join(',');
  return { payload: Buffer.from(`${text}\0`), text, expirySeconds: expiryOf(sources.map((s) => s.ttl)), dnserror: null, status: 'ok', sources };
}

/** Hosts file first (as "hosts: files dns"), then A and/or AAAA from DNS; duplicates dropped, order kept. */
async function addressesOf(name: string, families: Array<4 | 6>, hosts: string, resolver: StubResolver): Promise<{ status: DnsStatus; sources: AddressSource[] }> {
  const fromHosts = lookupHosts(hosts, name).filter((e) => families.includes(e.family));
  if (fromHosts.length > 0) return { status: 'ok', sources: dedupe(fromHosts.map((e) => ({ address: e.address, from: 'hosts', ttl: null }))) };
  const results: LookupResult[] = [];
  for (const family of families) results.push(await resolver.lookup(name, family === 4 ? 'A' : 'AAAA'));
  const sources = dedupe(results.flatMap((r) => r.records.map((rec) => ({ address: String(rec.data), from: r.server ?? '?', ttl: r.ttl }))));
  return { status: sources.length > 0 ? 'ok' : worst(results.map((r) => r.status)), sources };
}

async function resolveAfs(cell: string, options: Options, hosts: string, resolver: StubResolver): Promise<DnsKeyResult> {
  const srv = await resolver.lookup(`_afs3-vlserver._udp.${cell}`, 'SRV');
  const afsdb = srv.status === 'ok' ? null : await resolver.lookup(cell, 'AFSDB');
  const found = srv.status === 'ok' ? srv : afsdb!;
  if (found.status !== 'ok') return failure(srv.status === 'tryagain' ? 'tryagain' : found.status);
  const servers: ServerEntry[] = [];
  const ttls: Array<number | null> = [found.ttl];
  const sources: AddressSource[] = [];
  for (const rec of found.records) {
    const target = srv.status === 'ok' ? srvTarget(rec.data) : afsdbTarget(rec.data);
    if (!target || servers.some((s) => s.name.toLowerCase() === target.name.toLowerCase())) continue;
    const addrs = await addressesOf(target.name, options.families, hosts, resolver);
    ttls.push(...addrs.sources.map((s) => s.ttl));
    sources.push(...addrs.sources);
    servers.push({
      name: target.name, priority: target.priority, weight: target.weight, port: target.port,
      source: srv.status === 'ok' ? DNS_RECORD_SOURCE.DNS_SRV : DNS_RECORD_SOURCE.DNS_AFSDB,
      status: addrs.status === 'ok' ? DNS_LOOKUP_STATUS.GOOD : DNS_LOOKUP_STATUS.GOT_NOT_FOUND,
      protocol: DNS_SERVER_PROTOCOL.UDP, addresses: addrs.sources.map((s) => s.address),
    });
  }
  const expirySeconds = expiryOf(ttls);
  if (options.srv === 1) {
    const source = srv.status === 'ok' ? DNS_RECORD_SOURCE.DNS_SRV : DNS_RECORD_SOURCE.DNS_AFSDB;
    const payload = encodeServerListV1({ source, status: DNS_LOOKUP_STATUS.GOOD, servers });
    return { payload, text: null, expirySeconds, dnserror: null, status: 'ok', sources };
  }
  // keyutils' text form: every address, "+port" when an SRV record gave one.
  const text = servers.flatMap((s) => s.addresses.map((a) => (s.port ? `${a}+${s.port}` : a))).filter((v, i, all) => all.indexOf(v) === i).join(',');
  if (text === '') return failure('nodata');
  return { payload: Buffer.from(`${text}\0`), text, expirySeconds, dnserror: null, status: 'ok', sources };
}

function srvTarget(data: unknown): { name: string; priority: number; weight: number; port: number } | null {
  const d = data as { target?: string; priority?: number; weight?: number; port?: number };
  return d.target ? { name: d.target.replace(/\.$/, ''), priority: d.priority ?? 0, weight: d.weight ?? 0, port: d.port ?? 0 } : null;
}

/** AFSDB RDATA (RFC 1183): 16-bit subtype, then an uncompressed domain name (RFC 3597 §4). */
function afsdbTarget(data: unknown): { name: string; priority: number; weight: number; port: number } | null {
  if (!Buffer.isBuffer(data) || data.length < 3) return null;
  const labels: string[] = [];
  let off = 2;
  while (off < data.length && data[off] !== 0) {
    const len = data[off]!;
    if (len > 63 || off + 1 + len > data.length) return null; // compression pointers are not allowed here
    labels.push(data.subarray(off + 1, off + 1 + len).toString('latin1'));
    off += 1 + len;
  }
  return labels.length > 0 ? { name: labels.join('.'), priority: 0, weight: 0, port: 0 } : null;
}

function failure(status: DnsStatus): DnsKeyResult {
  const f = FAILURE[status === 'ok' ? 'nodata' : status];
  return { payload: Buffer.from(`#dnserror=${f.errno}\0`), text: `#dnserror=${f.errno}`, expirySeconds: f.timeout, dnserror: f.errno, status, sources: [] };
}

function expiryOf(ttls: Array<number | null>): number {
  const known = ttls.filter((t): t is number => t !== null);
  return known.length === 0 ? DEFAULT_EXPIRY_SECONDS : Math.max(1, Math.min(...known));
}

function dedupe(sources: AddressSource[]): AddressSource[] {
  return sources.filter((s, i) => sources.findIndex((o) => o.address === s.address) === i);
}

/** Of several failed lookups, the one that matters most for retrying: temporary beats permanent. */
function worst(statuses: DnsStatus[]): DnsStatus {
  for (const s of ['tryagain', 'norecovery', 'nodata', 'nxdomain'] as const) if (statuses.includes(s)) return s;
  return 'nxdomain';
}
