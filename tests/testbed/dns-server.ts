/**
 * Test DNS server, run with the host's node binary *inside* a container's
 * network namespace (see init.ts):
 *
 *   node dns-server.js CONFIG.json QUERY-LOG.jsonl
 *
 * Listens on UDP and TCP port `config.port` of every `config.listen` address,
 * prints "ready" on stdout once all sockets are bound, answers from the
 * records in CONFIG (re-read on every query so tests can change a running
 * server), and appends one JSON line per received query to QUERY-LOG before
 * replying, so a client that got an answer can count on the line being there.
 */
import { appendFileSync, readFileSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import type { Socket as UdpSocket } from 'node:dgram';
import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import * as dnsPacket from 'dns-packet';
import type { DecodedPacket, Packet, Question } from 'dns-packet';
import { RCODE, decide } from './dns-answer.js';
import type { Verdict } from './dns-answer.js';
import { DEFAULT_DNS_CONFIG } from './dns-types.js';
import type { DnsQueryLogEntry, DnsServerConfig } from './dns-types.js';

type Proto = 'udp' | 'tcp';

/** Without EDNS a UDP reply must fit in 512 bytes (RFC 1035 4.2.1). */
const CLASSIC_UDP_LIMIT = 512;

function loadConfig(path: string): DnsServerConfig {
  return { ...DEFAULT_DNS_CONFIG, ...(JSON.parse(readFileSync(path, 'utf8')) as Partial<DnsServerConfig>) };
}

/** Largest UDP reply the client accepts: its EDNS payload size, if any. */
function udpLimit(query: DecodedPacket): number {
  const opt = query.additionals?.find((a) => a.type === 'OPT');
  const advertised = opt && 'udpPayloadSize' in opt ? opt.udpPayloadSize : 0;
  return Math.max(CLASSIC_UDP_LIMIT, advertised);
}

function buildReply(query: DecodedPacket, question: Question, verdict: Verdict & { kind: 'reply' }): Packet {
  return {
    type: 'response',
    id: query.id ?? 0,
    // Echo RD as resolvers expect; we are authoritative for everything we know.
    flags: dnsPacket.AUTHORITATIVE_ANSWER | ((query.flags ?? 0) & dnsPacket.RECURSION_DESIRED) | RCODE[verdict.rcode],
    questions: [question],
    answers: verdict.answers,
  };
}

class DnsServer {
  constructor(
    private readonly configPath: string,
    private readonly logPath: string,
  ) {}

  /** Turns one query message into the reply bytes, or null for "stay silent". */
  handle(msg: Buffer, proto: Proto, from: string): Buffer | null {
    let query: DecodedPacket;
    try {
      query = dnsPacket.decode(msg);
    } catch {
      this.log({ proto, from, id: null, name: null, type: null, outcome: 'undecodable' });
      return null;
    }
    const question = query.questions?.[0];
    const entry = { proto, from, id: query.id ?? null, name: question?.name ?? null, type: question?.type ?? null };
    if (!question) {
      this.log({ ...entry, outcome: 'undecodable' });
      return null;
    }
    const verdict = decide(loadConfig(this.configPath), question);
    if (verdict.kind === 'drop') {
      this.log({ ...entry, outcome: 'dropped' });
      return null;
    }
    if (verdict.kind === 'garbage') {
      this.log({ ...entry, outcome: 'garbage' });
      return Buffer.from('\u0000\u0001 this is not a DNS message, whatever its first bytes say \u00ff');
    }
    if (verdict.kind === 'wrongid') {
      this.log({ ...entry, outcome: 'wrongid' });
      const real = buildReply(query, question, { kind: 'reply', rcode: 'NOERROR', answers: verdict.answers, truncateUdp: false });
      return dnsPacket.encode({ ...real, id: ((query.id ?? 0) + 1) & 0xffff });
    }
    const reply = buildReply(query, question, verdict);
    const truncate = proto === 'udp' && (verdict.truncateUdp || dnsPacket.encodingLength(reply) > udpLimit(query));
    this.log({ ...entry, outcome: truncate ? 'truncated' : verdict.rcode });
    // A truncated reply keeps the question but no records; the client retries over TCP.
    const flags = (reply.flags ?? 0) | (truncate ? dnsPacket.TRUNCATED_RESPONSE : 0);
    return dnsPacket.encode(truncate ? { ...reply, flags, answers: [] } : reply);
  }

  private log(entry: Omit<DnsQueryLogEntry, 'time'>): void {
    appendFileSync(this.logPath, JSON.stringify({ time: Date.now(), ...entry }) + '\n');
  }
}

function listenUdp(server: DnsServer, address: string, port: number): Promise<UdpSocket> {
  const family = address.includes(':') ? 'udp6' : 'udp4';
  const sock = createSocket(family);
  sock.on('message', (msg, rinfo) => {
    const reply = server.handle(msg, 'udp', rinfo.address);
    if (reply) sock.send(reply, rinfo.port, rinfo.address);
  });
  return new Promise((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(port, address, () => resolve(sock));
  });
}

/** TCP carries each message behind a 2-byte length (RFC 1035 4.2.2). */
function serveTcpConnection(server: DnsServer, conn: Socket): void {
  let pending = Buffer.alloc(0);
  conn.on('error', () => conn.destroy());
  conn.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
      const msg = pending.subarray(2, 2 + pending.readUInt16BE(0));
      pending = pending.subarray(2 + msg.length);
      const reply = server.handle(msg, 'tcp', conn.remoteAddress ?? '?');
      if (reply) {
        const len = Buffer.alloc(2);
        len.writeUInt16BE(reply.length);
        conn.write(Buffer.concat([len, reply]));
      }
    }
  });
}

function listenTcp(server: DnsServer, address: string, port: number): Promise<Server> {
  const tcp = createServer((conn) => serveTcpConnection(server, conn));
  return new Promise((resolve, reject) => {
    tcp.once('error', reject);
    tcp.listen(port, address, () => resolve(tcp));
  });
}

async function main(argv: string[]): Promise<void> {
  const [configPath, logPath] = argv;
  if (!configPath || !logPath) throw new Error('usage: dns-server.js CONFIG.json QUERY-LOG.jsonl');
  const config = loadConfig(configPath);
  const server = new DnsServer(configPath, logPath);
  await Promise.all(
    config.listen.flatMap((addr) => [listenUdp(server, addr, config.port), listenTcp(server, addr, config.port)]),
  );
  process.stdout.write('ready\n');
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`dns-server: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
