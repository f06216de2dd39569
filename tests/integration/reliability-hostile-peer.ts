/**
 * A hostile broker peer for reliability-hostile.test.ts, run as its own process
 * wherever the test needs it (inside a container, in a nested pid namespace).
 * It prints one JSON line.
 *
 *   node reliability-hostile-peer.js SOCKET '{"mode":"flood","connections":64,"durationMs":6000,"pathBytes":4096}'
 *   node reliability-hostile-peer.js SOCKET '{"mode":"hold","connections":8,"holdMs":3000,"halfFrame":true}'
 *
 * flood: open `connections`, write `show` requests with `pathBytes`-long paths,
 *   malformed frames (bad JSON, bad envelopes) and tiny frames on each (on the
 *   first `writeOn` of them only, when given; the rest stay silent) as fast as
 *   the broker takes them, never read a reply, and after `durationMs` exit at
 *   once (the kernel resets the connections with their replies unread):
 *   { connected, refused, bytesWritten }.
 * hold: open `connections` one after another, ping on each (refused ones say
 *   E_BUSY), then hold the accepted ones for `holdMs`, after writing half a
 *   frame on each when `halfFrame`, pinging every `keepAliveMs` if given, and
 *   creating `readyFile` once all are open: { accepted, refused, closedByBroker: [ms] }.
 */
import { writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { encodeFrame, FrameDecoder } from '../../src/server/framing.js';

type Spec =
  | { mode: 'flood'; connections: number; durationMs: number; pathBytes: number; writeOn?: number }
  | { mode: 'hold'; connections: number; holdMs: number; halfFrame?: boolean; keepAliveMs?: number; readyFile?: string };

function open(path: string): Promise<Socket | null> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => resolve(s));
    s.once('error', () => resolve(null));
  });
}

/** The frames of one round of the flood: every kind a hostile peer may send. */
function floodRound(pathBytes: number, id: number): Buffer {
  const path = `/${'x'.repeat(pathBytes - 1)}`;
  const raw = (text: string) => {
    const body = Buffer.from(text);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(body.length);
    return Buffer.concat([head, body]);
  };
  return Buffer.concat([
    encodeFrame({ v: 1, id, op: 'show', params: { path } }),
    raw(`{"v":1,"id":${id},"op":"show","params":{"path":"${path}"`), // bad JSON, echoing a long path
    raw(`{"v":1,"id":${id},"op":"x","${'k'.repeat(pathBytes)}":1}`), // unknown envelope key, long
    raw('{'),
    raw(''),
  ]);
}

async function flood(path: string, spec: Extract<Spec, { mode: 'flood' }>): Promise<void> {
  const socks: Socket[] = [];
  let refused = 0;
  let bytesWritten = 0;
  for (let i = 0; i < spec.connections; i++) {
    const s = await open(path);
    if (s === null) refused++;
    else socks.push(s);
  }
  const end = performance.now() + spec.durationMs;
  const pump = (s: Socket, id: number): void => {
    // Never read: no 'data' listener, so Node stops reading once its own small buffer is full.
    s.on('error', () => undefined);
    const write = (): void => {
      while (performance.now() < end && !s.destroyed) {
        const round = floodRound(spec.pathBytes, id++);
        bytesWritten += round.length;
        if (!s.write(round)) {
          s.once('drain', write);
          return;
        }
      }
    };
    write();
  };
  socks.forEach((s, i) => {
    if (i < (spec.writeOn ?? socks.length)) pump(s, i * 1_000_000);
    else s.on('error', () => undefined); // held open, silent, its answer unread
  });
  await new Promise((r) => setTimeout(r, spec.durationMs));
  process.stdout.write(`${JSON.stringify({ connected: socks.length, refused, bytesWritten })}\n`, () => process.exit(0));
}

async function hold(path: string, spec: Extract<Spec, { mode: 'hold' }>): Promise<void> {
  let accepted = 0;
  let refused = 0;
  const closedByBroker: number[] = [];
  const started = performance.now();
  const held: Socket[] = [];
  let done = false;
  for (let i = 0; i < spec.connections; i++) {
    const s = await open(path);
    if (s === null) {
      refused++;
      continue;
    }
    const answer = await new Promise<{ ok: boolean; code?: string }>((resolve) => {
      const d = new FrameDecoder(1 << 20);
      s.on('data', (c: Buffer) => {
        for (const f of d.push(c)) {
          const m = JSON.parse(f.toString()) as { ok: boolean; error?: { code: string } };
          resolve({ ok: m.ok, ...(m.error ? { code: m.error.code } : {}) });
        }
      });
      s.once('close', () => resolve({ ok: false, code: 'E_CLOSED' }));
      s.on('error', () => undefined);
      s.write(encodeFrame({ v: 1, id: 1, op: 'ping' }));
    });
    if (!answer.ok) {
      refused++;
      s.destroy();
      continue;
    }
    accepted++;
    held.push(s);
    s.once('close', () => {
      if (!done) closedByBroker.push(Math.round(performance.now() - started));
    });
    if (spec.halfFrame) {
      const head = Buffer.alloc(4);
      head.writeUInt32BE(100);
      s.write(Buffer.concat([head, Buffer.from('{"v":1,')]));
    }
  }
  if (spec.readyFile) writeFileSync(spec.readyFile, '');
  const keepAlive = spec.keepAliveMs
    ? setInterval(() => { for (const s of held) if (!s.destroyed) s.write(encodeFrame({ v: 1, id: 2, op: 'ping' })); }, spec.keepAliveMs)
    : undefined;
  await new Promise((r) => setTimeout(r, spec.holdMs));
  clearInterval(keepAlive);
  done = true;
  for (const s of held) s.destroy();
  process.stdout.write(`${JSON.stringify({ accepted, refused, closedByBroker })}\n`);
}

const [socketPath, specJson] = process.argv.slice(2);
const spec = JSON.parse(specJson!) as Spec;
await (spec.mode === 'flood' ? flood(socketPath!, spec) : hold(socketPath!, spec));
