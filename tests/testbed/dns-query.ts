/**
 * Minimal DNS client meant to run *inside* a container (via exec), so the
 * query leaves from the container's network namespace and never from the
 * host's:
 *
 *   node dns-query.js NAME [TYPE] [--transport udp|tcp|auto] [--server ADDR] [--port N] [--timeout MS]
 *
 * Prints one DnsQueryResult as JSON and exits 0, also on timeouts and DNS
 * errors (those are results the tests want to look at, not crashes).
 */
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { parseArgs } from 'node:util';
import * as dnsPacket from 'dns-packet';
import type { Answer, DecodedPacket, Packet, RecordType } from 'dns-packet';
import { decodeAfsdbData } from './dns-answer.js';
import type { DnsAnswerView, DnsQueryResult, DnsTransport } from './dns-types.js';

interface Target {
  readonly server: string;
  readonly port: number;
  readonly timeoutMs: number;
}

/** Runs `start` until it calls done/fail or `ms` pass; its cleanup runs exactly once. */
function withTimeout<T>(
  what: string,
  ms: number,
  start: (done: (v: T) => void, fail: (e: Error) => void) => () => void,
): Promise<T> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let cleanup = (): void => undefined;
    const finish = (settle: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      cleanup();
      settle();
    };
    const timer = setTimeout(() => finish(() => reject(new Error(`timeout: no ${what} reply in ${ms}ms`))), ms);
    cleanup = start(
      (v) => finish(() => resolve(v)),
      (e) => finish(() => reject(e)),
    );
  });
}

/** Decodes a reply, treating garbage like a stub resolver does: as no reply. */
function tryDecode(msg: Buffer): DecodedPacket | null {
  try {
    return dnsPacket.decode(msg);
  } catch {
    return null;
  }
}

function queryUdp(query: Packet, t: Target): Promise<DecodedPacket> {
  const sock = createSocket(t.server.includes(':') ? 'udp6' : 'udp4');
  return withTimeout('udp', t.timeoutMs, (done, fail) => {
    sock.on('error', fail);
    // Ignore replies with a foreign id, as a real stub resolver does.
    sock.on('message', (msg) => {
      const reply = tryDecode(msg);
      if (reply && reply.id === query.id) done(reply);
    });
    sock.send(dnsPacket.encode(query), t.port, t.server);
    return () => sock.close();
  });
}

function queryTcp(query: Packet, t: Target): Promise<DecodedPacket> {
  const conn = connect(t.port, t.server);
  let received = Buffer.alloc(0);
  return withTimeout('tcp', t.timeoutMs, (done, fail) => {
    conn.on('error', fail);
    conn.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      // Over TCP every message is preceded by its 2-byte length (RFC 1035 4.2.2).
      if (received.length >= 2 && received.length >= 2 + received.readUInt16BE(0)) {
        const reply = tryDecode(received.subarray(2, 2 + received.readUInt16BE(0)));
        if (reply) done(reply);
        else fail(new Error('undecodable tcp reply'));
      }
    });
    conn.write(dnsPacket.streamEncode(query));
    return () => conn.destroy();
  });
}

function view(a: Answer): DnsAnswerView {
  const ttl = 'ttl' in a && typeof a.ttl === 'number' ? a.ttl : null;
  const data: unknown = 'data' in a ? a.data : null;
  if (a.type === 'AFSDB' && Buffer.isBuffer(data)) return { name: a.name, type: a.type, ttl, data: decodeAfsdbData(data) };
  return { name: a.name, type: a.type, ttl, data: Buffer.isBuffer(data) ? data.toString('hex') : data };
}

async function query(name: string, type: RecordType, transport: DnsTransport, t: Target): Promise<DnsQueryResult> {
  const msg: Packet = {
    type: 'query',
    id: Math.floor(Math.random() * 0xffff),
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type, name, class: 'IN' }],
  };
  let used: 'udp' | 'tcp' = transport === 'tcp' ? 'tcp' : 'udp';
  let reply = used === 'tcp' ? await queryTcp(msg, t) : await queryUdp(msg, t);
  if (transport === 'auto' && reply.flag_tc) {
    used = 'tcp';
    reply = await queryTcp(msg, t);
  }
  return {
    ok: true,
    transport: used,
    // dns-packet decodes the rcode to a name; @types/dns-packet just does not declare it.
    rcode: (reply as DecodedPacket & { rcode?: string }).rcode ?? 'UNKNOWN',
    truncated: reply.flag_tc,
    answers: (reply.answers ?? []).map(view),
  };
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      transport: { type: 'string', default: 'udp' },
      server: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '53' },
      timeout: { type: 'string', default: '2000' },
    },
  });
  const [name, type = 'A'] = positionals;
  if (!name) throw new Error('usage: dns-query.js NAME [TYPE] [--transport udp|tcp|auto]');
  const target = { server: values.server, port: Number(values.port), timeoutMs: Number(values.timeout) };
  const result = await query(name, type as RecordType, values.transport as DnsTransport, target).catch(
    (err: unknown): DnsQueryResult => ({ ok: false, error: err instanceof Error ? err.message : String(err) }),
  );
  process.stdout.write(JSON.stringify(result) + '\n');
}

await main();
