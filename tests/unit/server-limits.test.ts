/**
 * The server's own bounds (issue 16, findings 1 and 2; issue 17): error
 * answers never echo the caller's input at length; host root on the admin
 * socket has a pool of its own that tenants cannot fill; the per-tenant,
 * per-context and per-connection limits (Admission, ContextSlots, the
 * connection's token bucket and in-flight cap) refuse with E_BUSY. The
 * Connection tests run it over a real unix socket, with fake hooks.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { BrokerError } from '../../src/common/errors.js';
import { NullLoggerFactory } from '../../src/logging/winston-logger-factory.js';
import { Connection, type ConnectionHooks } from '../../src/server/connection.js';
import { encodeFrame, FrameDecoder } from '../../src/server/framing.js';
import { Admission, ContextSlots, DEFAULT_LIMITS, type Limits, TokenBucket } from '../../src/server/limits.js';
import { errorResponse, MAX_ERROR_DETAILS, MAX_ERROR_MESSAGE, parseRequest, type Response } from '../../src/server/protocol.js';
import type { Clock } from '../../src/common/tokens.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { until } from '../helpers/until.js';

test('an error answer quotes at most 256 characters of the caller\'s input, and drops long details', () => {
  const path = `/${'x'.repeat(4095)}`;
  const r = errorResponse(7, new BrokerError('E_NOT_FOUND', `no registration matches ${JSON.stringify({ path })}`, { path }));
  assert.equal(r.ok, false);
  if (r.ok) return;
  assert.ok(r.error.message.length <= MAX_ERROR_MESSAGE, `${r.error.message.length} characters`);
  assert.deepEqual(r.error.details, { truncated: true });
  assert.ok(JSON.stringify(r).length < MAX_ERROR_MESSAGE + MAX_ERROR_DETAILS);
  // An unknown envelope key of 60 KiB: the answer stays small.
  const { error } = parseRequest(Buffer.from(`{"v":1,"id":1,"op":"ping","${'k'.repeat(60_000)}":1}`));
  assert.ok(JSON.stringify(errorResponse(1, error)).length < 2048);
});

test('tenants holding every connection and request slot do not lock host root out, nor it them', () => {
  const limits = { ...DEFAULT_LIMITS, globalConnections: 4, globalInFlight: 4, tenantConnections: 2, tenantInFlight: 2 };
  const admission = new Admission(limits, new Set(['admin']));
  for (const t of ['a', 'a', 'b', 'b']) admission.connect(t);
  assert.throws(() => admission.connect('c'), { code: 'E_BUSY' });
  for (const t of ['a', 'a', 'b', 'b']) admission.admit(t);
  assert.throws(() => admission.admit('c'), { code: 'E_BUSY' });
  for (let i = 0; i < 4; i++) admission.connect('admin');
  assert.throws(() => admission.connect('admin'), { code: 'E_BUSY' }, 'host root is held to the global limit in its own pool');
  const releases = [0, 1, 2, 3].map(() => admission.admit('admin'));
  assert.throws(() => admission.admit('admin'), { code: 'E_BUSY' });
  releases[0]!();
  releases[0]!(); // idempotent
  admission.admit('admin');
  assert.throws(() => admission.admit('admin'), { code: 'E_BUSY' });
});

test('a token bucket gives its burst at once, then one token per 1/rate seconds, and never more than the burst', () => {
  const bucket = new TokenBucket(10, 3, 0);
  assert.deepEqual([0, 0, 0, 0].map(() => bucket.take(0)), [true, true, true, false], 'the burst, then nothing');
  assert.equal(bucket.take(50), false, 'half a token after 50 ms at 10/s');
  assert.equal(bucket.take(100), true, 'a whole token after 100 ms');
  assert.equal(bucket.take(100), false);
  // An hour idle refills to the burst, not to 36,000.
  const after = 3_600_000;
  assert.deepEqual([0, 0, 0, 0].map(() => bucket.take(after)), [true, true, true, false]);
  // A clock that steps back gives no tokens (and takes none).
  assert.equal(bucket.take(after - 1000), false);
});

test('a tenant over its connection or request limit is refused while other tenants are not; closing and finishing give the slots back', () => {
  const limits = { ...DEFAULT_LIMITS, tenantConnections: 2, tenantInFlight: 2 };
  const admission = new Admission(limits);
  admission.connect('a');
  admission.connect('a');
  assert.throws(() => admission.connect('a'), { code: 'E_BUSY' });
  admission.connect('b');
  admission.disconnect('a');
  admission.connect('a');
  assert.throws(() => admission.connect('a'), { code: 'E_BUSY' }, 'the freed connection slot was taken again');
  const first = admission.admit('a');
  admission.admit('a');
  assert.throws(() => admission.admit('a'), { code: 'E_BUSY' });
  admission.admit('b');
  assert.equal(admission.inFlight, 3);
  first();
  first(); // a second release frees nothing more
  assert.equal(admission.inFlight, 2);
  admission.admit('a');
  assert.throws(() => admission.admit('a'), { code: 'E_BUSY' }, 'a release run twice did not free two slots');
});

test('an exempt tenant is held only to the global limits; a tenant that is not exempt is held to its own', () => {
  const limits = { ...DEFAULT_LIMITS, globalConnections: 3, globalInFlight: 3, tenantConnections: 1, tenantInFlight: 1 };
  const admission = new Admission(limits, new Set(['admin']));
  for (let i = 0; i < 3; i++) admission.connect('admin');
  assert.throws(() => admission.connect('admin'), { code: 'E_BUSY' });
  for (let i = 0; i < 3; i++) admission.admit('admin');
  assert.throws(() => admission.admit('admin'), { code: 'E_BUSY' });
  admission.connect('t');
  assert.throws(() => admission.connect('t'), { code: 'E_BUSY' });
  admission.admit('t');
  assert.throws(() => admission.admit('t'), { code: 'E_BUSY' });
});

test('upcall slots are counted per context: one context at its limit is refused, another is not, and a release is idempotent', () => {
  const slots = new ContextSlots(2);
  const a1 = slots.acquire('ctx-a');
  slots.acquire('ctx-a');
  assert.throws(() => slots.acquire('ctx-a'), (e: BrokerError) => e.code === 'E_BUSY' && e.details['limit'] === 2);
  const b = slots.acquire('ctx-b');
  a1();
  a1();
  slots.acquire('ctx-a');
  assert.throws(() => slots.acquire('ctx-a'), { code: 'E_BUSY' }, 'a release run twice did not free two slots');
  b();
  slots.acquire('ctx-b');
  slots.acquire('ctx-b');
  assert.throws(() => slots.acquire('ctx-b'), { code: 'E_BUSY' });
});

/** One Connection over a real unix socket; `send` writes frames from the peer's side, `replies` collects its answers. */
async function connection(limits: Limits, hooks: ConnectionHooks, clock: Clock = new FakeClock()): Promise<{ send(...bodies: unknown[]): void; replies(n: number): Promise<Response[]>; closed: Promise<void>; end(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'ub-limits-'));
  const path = join(dir, 's');
  const server = createServer();
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const peer = connect(path);
  const ours = await accepted;
  new Connection(ours, limits, hooks, new NullLoggerFactory().get('test'), false, clock);
  const decoder = new FrameDecoder(1 << 20);
  const got: Response[] = [];
  let wake: () => void = () => undefined;
  peer.on('data', (chunk: Buffer) => {
    for (const f of decoder.push(chunk)) got.push(JSON.parse(f.toString('utf8')) as Response);
    wake();
  });
  const closed = new Promise<void>((resolve) => peer.once('close', () => resolve()));
  return {
    send: (...bodies) => peer.write(Buffer.concat(bodies.map((b) => (Buffer.isBuffer(b) ? frameOf(b) : encodeFrame(b))))),
    async replies(n) {
      while (got.length < n) await new Promise<void>((resolve) => (wake = resolve));
      return got.splice(0, n);
    },
    closed,
    async end() {
      peer.destroy();
      ours.destroy();
      await new Promise((resolve) => server.close(resolve));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A connection that never answers must fail the test, not hang the suite (not a timing assertion). */
const BOUNDED = { timeout: 60_000 };
const frameOf = (raw: Buffer): Buffer => Buffer.concat([Buffer.from([0, 0, 0, raw.length]), raw]);
const ping = (id: number) => ({ v: 1, id, op: 'ping' });
const codeOf = (r: Response): string => (r.ok ? 'ok' : r.error.code);

test('a connection over its message rate is answered E_BUSY with the request\'s id, and malformed frames take tokens too', BOUNDED, async () => {
  // A rate of 0 per second: the burst is all there is, so the test does not depend on the clock.
  const limits = { ...DEFAULT_LIMITS, messagesPerSecond: 0, messageBurst: 3 };
  let dispatched = 0;
  const c = await connection(limits, { admit: () => () => undefined, dispatch: async (r) => (dispatched++, { v: 1, id: r.id, ok: true, result: {} }) });
  try {
    c.send(Buffer.from('not json'), ping(1), ping(2), ping(3), Buffer.from('{"v":1,"id":"x7","op":"ping","params":'));
    // Refusals go out at once, dispatched answers a moment later: compare by id.
    const replies = new Map((await c.replies(5)).map((r) => [r.id, codeOf(r)]));
    assert.deepEqual(replies, new Map<unknown, string>([[null, 'E_BAD_REQUEST'], [1, 'ok'], [2, 'ok'], [3, 'E_BUSY'], ['x7', 'E_BUSY']]));
    assert.equal(dispatched, 2, 'a frame over the rate is not dispatched');
  } finally {
    await c.end();
  }
});

test('a connection over its rate gets tokens back as its clock moves: one per 1/rate seconds, up to the burst', BOUNDED, async () => {
  const clock = new FakeClock();
  const limits = { ...DEFAULT_LIMITS, messagesPerSecond: 10, messageBurst: 2 };
  let dispatched = 0;
  const c = await connection(limits, { admit: () => () => undefined, dispatch: async (r) => (dispatched++, { v: 1, id: r.id, ok: true, result: {} }) }, clock);
  const codes = async (n: number) => new Map((await c.replies(n)).map((r) => [r.id, codeOf(r)]));
  try {
    c.send(ping(1), ping(2), ping(3));
    assert.deepEqual(await codes(3), new Map([[1, 'ok'], [2, 'ok'], [3, 'E_BUSY']]), 'the burst, then refused while the clock stands');
    clock.advance(99);
    c.send(ping(4));
    assert.deepEqual(await codes(1), new Map([[4, 'E_BUSY']]), '99 ms at 10/s is not a whole token');
    clock.advance(1);
    c.send(ping(5), ping(6));
    assert.deepEqual(await codes(2), new Map([[5, 'ok'], [6, 'E_BUSY']]), 'one token after 100 ms');
    clock.advance(3_600_000);
    c.send(ping(7), ping(8), ping(9));
    assert.deepEqual(await codes(3), new Map([[7, 'ok'], [8, 'ok'], [9, 'E_BUSY']]), 'an hour idle refills to the burst only');
    assert.equal(dispatched, 5);
  } finally {
    await c.end();
  }
});

test('a connection at its in-flight limit, or refused admission, is answered E_BUSY without dispatching; a finished request frees its slot', BOUNDED, async () => {
  const limits = { ...DEFAULT_LIMITS, connectionInFlight: 2 };
  const finish: Array<() => void> = [];
  let released = 0;
  let refuse = false;
  const c = await connection(limits, {
    admit: () => {
      if (refuse) throw new BrokerError('E_BUSY', 'tenant full');
      return () => void released++;
    },
    dispatch: (r) => new Promise((resolve) => finish.push(() => resolve({ v: 1, id: r.id, ok: true, result: {} }))),
  });
  try {
    c.send(ping(1), ping(2), ping(3));
    assert.deepEqual((await c.replies(1)).map((r) => [r.id, codeOf(r)]), [[3, 'E_BUSY']]);
    assert.equal(finish.length, 2);
    finish[0]!();
    assert.deepEqual((await c.replies(1)).map((r) => [r.id, codeOf(r)]), [[1, 'ok']]);
    assert.equal(released, 1, 'the slot is released once the reply is written');
    c.send(ping(4));
    await until('request 4 to be dispatched', () => finish.length === 3);
    refuse = true;
    c.send(ping(5));
    assert.deepEqual((await c.replies(1)).map((r) => [r.id, codeOf(r)]), [[5, 'E_BUSY']]);
    assert.equal(finish.length, 3, 'a request refused admission is not dispatched');
  } finally {
    for (const f of finish) f();
    await c.end();
  }
});

test('a frame over maxMessageBytes is answered E_PROTOCOL once and the connection is closed, its body never read', BOUNDED, async () => {
  const limits = { ...DEFAULT_LIMITS, maxMessageBytes: 64 };
  let dispatched = 0;
  const c = await connection(limits, { admit: () => () => undefined, dispatch: async (r) => (dispatched++, { v: 1, id: r.id, ok: true, result: {} }) });
  try {
    c.send({ v: 1, id: 1, op: 'ping', params: { pad: 'x'.repeat(100) } }, ping(2));
    const [r] = await c.replies(1);
    assert.equal(codeOf(r!), 'E_PROTOCOL');
    await c.closed;
    assert.equal(dispatched, 0);
  } finally {
    await c.end();
  }
});
