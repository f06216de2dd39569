/**
 * The JSON format of a container's DNS server configuration, shared by the
 * host (which writes it) and the server inside the container (which re-reads
 * it on every query, so tests can change answers of a running container).
 *
 * Records and behaviours are discriminated unions on purpose: a new record
 * type or failure mode is one more union member plus one `case`, and the
 * compiler points at every place that must learn about it.
 */

interface RecordBase {
  /** Owner name, case-insensitive, trailing dot optional. */
  readonly name: string;
  /** Seconds; DEFAULT_TTL when omitted. */
  readonly ttl?: number;
}

export type DnsRecord =
  | (RecordBase & { readonly type: 'A'; readonly address: string })
  | (RecordBase & { readonly type: 'AAAA'; readonly address: string })
  | (RecordBase & { readonly type: 'CNAME'; readonly target: string })
  | (RecordBase & {
      readonly type: 'SRV';
      readonly target: string;
      readonly port: number;
      readonly priority?: number;
      readonly weight?: number;
    })
  /** RFC 1183: subtype 1 = AFS cell database server, 2 = DCE/NCA server. */
  | (RecordBase & { readonly type: 'AFSDB'; readonly subtype: number; readonly hostname: string });

export type DnsRecordType = DnsRecord['type'];

/**
 * Name-level misbehaviour, applied before any record lookup:
 * - servfail: answer with rcode SERVFAIL;
 * - refused:  answer with rcode REFUSED;
 * - noanswer: log the query and never reply (client must time out);
 * - truncate: over UDP reply with the TC bit and no records, forcing the
 *   client to retry over TCP, where the full answer is given.
 * `types` restricts the behaviour to some query types (default: all).
 */
export interface NameBehaviour {
  readonly name: string;
  readonly kind: 'servfail' | 'refused' | 'noanswer' | 'truncate' | 'garbage' | 'wrongid';
  readonly types?: readonly string[];
}

export interface DnsServerConfig {
  readonly records: readonly DnsRecord[];
  readonly behaviours: readonly NameBehaviour[];
  /** Addresses to listen on (UDP and TCP), read at server start only. */
  readonly listen: readonly string[];
  readonly port: number;
}

export const DEFAULT_TTL = 300;

export const DEFAULT_DNS_CONFIG: DnsServerConfig = {
  records: [],
  behaviours: [],
  listen: ['127.0.0.1'],
  port: 53,
};

/** One line of the server's query log (JSON lines, appended before replying). */
export interface DnsQueryLogEntry {
  /** ms since epoch when the query was received. */
  readonly time: number;
  readonly proto: 'udp' | 'tcp';
  readonly from: string;
  /** null when the datagram could not be decoded as a DNS query. */
  readonly id: number | null;
  readonly name: string | null;
  readonly type: string | null;
  /** What the server did: rcode name, "truncated", "dropped" or "undecodable". */
  readonly outcome: string;
}

/** DNS names compare case-insensitively and without the root's trailing dot. */
export function normalizeName(name: string): string {
  return name.replace(/\.$/, '').toLowerCase();
}

/** How dns-query.js sends a query: "auto" retries over TCP when UDP is truncated. */
export type DnsTransport = 'udp' | 'tcp' | 'auto';

/** JSON printed by dns-query.js (the in-container client). */
export type DnsQueryResult =
  | {
      readonly ok: true;
      readonly transport: 'udp' | 'tcp';
      readonly rcode: string;
      readonly truncated: boolean;
      readonly answers: readonly DnsAnswerView[];
    }
  | { readonly ok: false; readonly error: string };

export interface DnsAnswerView {
  readonly name: string;
  readonly type: string;
  readonly ttl: number | null;
  /** Address/name string, SRV object, {subtype, hostname} for AFSDB, else hex. */
  readonly data: unknown;
}
