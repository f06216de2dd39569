/**
 * A broker client that runs as its own process wherever a test needs a caller:
 * inside a container (as root or not), in a nested pid namespace, in a child
 * user namespace, or on the host under setpriv. It prints one JSON line.
 *
 *   node batch-client.js SOCKET '{"mode":"batch","requests":[{"op":"list"}]}'
 *   node batch-client.js SOCKET '{"mode":"flood","op":"resolve","params":{...},"connections":4,"inFlight":16,"durationMs":5000}'
 *   node batch-client.js SOCKET '{"mode":"series","op":"resolve","params":{...},"durationMs":5000,"startAfterMs":500}'
 *
 * batch: each request in turn, on one connection: [{ ok, code?, result?, ms }];
 *   "$registered" in params is the id the batch's last `register` returned.
 * flood: keep `inFlight` requests outstanding on each of `connections` for
 *   `durationMs`; count outcomes by code and time every E_BUSY answer.
 * series: one request at a time for `durationMs`, timing each (the victim's view);
 *   with `perSecond`, no faster than that on average (a client that keeps to its
 *   connection's message rate: 500/s by default, server/connection.ts).
 * burst: open `connections`, then write `perConnection` requests on each at
 *   once; every answer in arrival order: [{ conn, ok, code?, ms, at }] (`at`:
 *   ms since the burst was written).
 * connections: open `count` connections one after the other and ping on each:
 *   [{ ok, code?, ms }] (a refused connection answers E_BUSY with id null).
 *
 * Connect failures are reported as code E_UNAVAILABLE with the errno, so a
 * caller that may not reach a socket (host non-root, admin socket 0600) is one
 * cell of the matrix like any other.
 */
import { connect, type Socket } from 'node:net';
import { encodeFrame, FrameDecoder } from '../../src/server/framing.js';

interface Answer {
  ok: boolean;
  code?: string;
  result?: unknown;
  ms: number;
}

type Spec =
  | { mode: 'batch'; requests: Array<{ op: string; params?: Record<string, unknown> }> }
  | { mode: 'flood'; op: string; params?: Record<string, unknown>; connections: number; inFlight: number; durationMs: number }
  | { mode: 'series'; op: string; params?: Record<string, unknown>; durationMs: number; startAfterMs?: number; perSecond?: number }
  | { mode: 'burst'; op: string; params?: Record<string, unknown>; connections: number; perConnection: number }
  | { mode: 'connections'; count: number };

class Conn {
  private nextId = 1;
  private readonly waiting = new Map<number, { sent: number; done: (a: Answer) => void }>();
  private readonly decoder = new FrameDecoder(1 << 24);
  private pendingRefusal: string | null = null;
  closed = false;

  private constructor(private readonly sock: Socket) {
    sock.on('data', (chunk: Buffer) => {
      for (const f of this.decoder.push(chunk)) {
        const msg = JSON.parse(f.toString('utf8')) as { id: number | null; ok: boolean; result?: unknown; error?: { code: string } };
        // An answer with id null (a refused connection) fails whatever is outstanding.
        const ids = msg.id === null ? [...this.waiting.keys()] : [msg.id];
        for (const id of ids) {
          const w = this.waiting.get(id);
          if (!w) continue;
          this.waiting.delete(id);
          w.done({ ok: msg.ok, ...(msg.ok ? { result: msg.result } : { code: msg.error?.code ?? '?' }), ms: performance.now() - w.sent });
        }
        if (msg.id === null) this.pendingRefusal = msg.error?.code ?? '?';
      }
    });
    sock.on('close', () => {
      this.closed = true;
      for (const [id, w] of this.waiting) {
        this.waiting.delete(id);
        w.done({ ok: false, code: this.pendingRefusal ?? 'E_CLOSED', ms: performance.now() - w.sent });
      }
    });
    sock.on('error', () => undefined);
  }

  static open(path: string): Promise<Conn | string> {
    return new Promise((resolve) => {
      const s = connect(path);
      s.once('connect', () => resolve(new Conn(s)));
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'ECONNECT'));
    });
  }

  request(op: string, params: Record<string, unknown> = {}): Promise<Answer> {
    const id = this.nextId++;
    return new Promise((done) => {
      if (this.closed) {
        done({ ok: false, code: this.pendingRefusal ?? 'E_CLOSED', ms: 0 });
        return;
      }
      this.waiting.set(id, { sent: performance.now(), done });
      this.sock.write(encodeFrame({ v: 1, id, op, params }));
    });
  }

  close(): void {
    this.sock.destroy();
  }
}

/**
 * One request after another. A param value "$registered" stands for the id of
 * the last registration this batch made (a caller acting on its own).
 */
async function batch(path: string, spec: Extract<Spec, { mode: 'batch' }>): Promise<Answer[]> {
  const conn = await Conn.open(path);
  if (typeof conn === 'string') return spec.requests.map(() => ({ ok: false, code: 'E_UNAVAILABLE', result: conn, ms: 0 }));
  const out: Answer[] = [];
  let registered = '';
  for (const r of spec.requests) {
    const params = Object.fromEntries(Object.entries(r.params ?? {}).map(([k, v]) => [k, v === '$registered' ? registered : v]));
    const a = await conn.request(r.op, params);
    if (r.op === 'register' && a.ok) registered = (a.result as { id: string }).id;
    out.push(a);
  }
  conn.close();
  return out;
}

async function flood(path: string, spec: Extract<Spec, { mode: 'flood' }>) {
  const counts: Record<string, number> = {};
  const busyMs: number[] = [];
  const okMs: number[] = [];
  const end = performance.now() + spec.durationMs;
  const one = async (conn: Conn): Promise<void> => {
    while (performance.now() < end && !conn.closed) {
      const a = await conn.request(spec.op, spec.params);
      const key = a.ok ? 'ok' : a.code!;
      counts[key] = (counts[key] ?? 0) + 1;
      if (a.code === 'E_BUSY') {
        busyMs.push(a.ms);
        // Refused at once: back off a little so the flood does not turn into a message-rate test.
        await new Promise((r) => setTimeout(r, 5));
      } else if (a.ok) okMs.push(a.ms);
    }
  };
  const conns: Conn[] = [];
  for (let i = 0; i < spec.connections; i++) {
    const c = await Conn.open(path);
    if (typeof c === 'string') counts[`connect:${c}`] = (counts[`connect:${c}`] ?? 0) + 1;
    else conns.push(c);
  }
  await Promise.all(conns.flatMap((c) => Array.from({ length: spec.inFlight }, () => one(c))));
  for (const c of conns) c.close();
  return { counts, busyMs: summary(busyMs), okMs: summary(okMs) };
}

async function series(path: string, spec: Extract<Spec, { mode: 'series' }>) {
  if (spec.startAfterMs) await new Promise((r) => setTimeout(r, spec.startAfterMs));
  const conn = await Conn.open(path);
  if (typeof conn === 'string') return { counts: { [`connect:${conn}`]: 1 }, ms: summary([]), samples: [] };
  const counts: Record<string, number> = {};
  const ms: number[] = [];
  const start = performance.now();
  const end = start + spec.durationMs;
  const gap = spec.perSecond ? 1000 / spec.perSecond : 0;
  for (let sent = 0; performance.now() < end; sent++) {
    const wait = start + sent * gap - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const a = await conn.request(spec.op, spec.params);
    const key = a.ok ? 'ok' : a.code!;
    counts[key] = (counts[key] ?? 0) + 1;
    ms.push(a.ms);
  }
  conn.close();
  return { counts, ms: summary(ms), samples: ms.map((m) => Math.round(m * 10) / 10) };
}

async function burst(path: string, spec: Extract<Spec, { mode: 'burst' }>) {
  const conns: Conn[] = [];
  for (let i = 0; i < spec.connections; i++) {
    const c = await Conn.open(path);
    if (typeof c === 'string') throw new Error(`connect: ${c}`);
    conns.push(c);
  }
  const t0 = performance.now();
  const out: Array<Answer & { conn: number; at: number; rid?: string }> = [];
  await Promise.all(conns.flatMap((c, i) => Array.from({ length: spec.perConnection }, () =>
    c.request(spec.op, spec.params).then((a) => {
      const { result, ...rest } = a;
      // A registration's id, when that is what came back (the caller tracks what was acknowledged).
      const rid = (result as { id?: unknown } | undefined)?.id;
      out.push({ ...rest, conn: i, at: performance.now() - t0, ...(typeof rid === 'string' ? { rid } : {}) });
    }))));
  for (const c of conns) c.close();
  return out;
}

async function connections(path: string, spec: Extract<Spec, { mode: 'connections' }>) {
  const conns: Conn[] = [];
  const out: Answer[] = [];
  for (let i = 0; i < spec.count; i++) {
    const c = await Conn.open(path);
    if (typeof c === 'string') {
      out.push({ ok: false, code: `connect:${c}`, ms: 0 });
      continue;
    }
    conns.push(c);
    const { result: _r, ...a } = await c.request('ping');
    out.push(a);
  }
  for (const c of conns) c.close();
  return out;
}

export function summary(values: number[]): { n: number; p50: number; p99: number; max: number } {
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number) => (s.length === 0 ? 0 : s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!);
  return { n: s.length, p50: at(0.5), p99: at(0.99), max: s.at(-1) ?? 0 };
}

async function main(): Promise<void> {
  const [path, json] = process.argv.slice(2);
  if (!path || !json) throw new Error('usage: batch-client SOCKET SPEC_JSON');
  const spec = JSON.parse(json) as Spec;
  const out = spec.mode === 'batch' ? await batch(path, spec)
    : spec.mode === 'flood' ? await flood(path, spec)
    : spec.mode === 'burst' ? await burst(path, spec)
    : spec.mode === 'connections' ? await connections(path, spec)
    : await series(path, spec);
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

// Imported for `summary` by tests; run as a program only when it is the entry point.
if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    process.exit(1);
  });
}
