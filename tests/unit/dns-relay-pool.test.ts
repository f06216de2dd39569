/**
 * RelayPool and RelayTransport logic, with an in-memory netrelay (the real
 * relay's reuse inside a container: tests/integration/dns-relay-pool.test.ts).
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import type { Context, ContextTable } from '../../src/broker/context-table.js';
import { defaultConfig } from '../../src/common/defaults.js';
import { Metrics } from '../../src/service/metrics.js';
import { PREFETCH, type RelayLauncher, type RunningRelay } from '../../src/upcall/dns/relay-launcher.js';
import { RelayPool, type RelayPoolConfig } from '../../src/upcall/dns/relay-pool.js';
import { RelayTransport } from '../../src/upcall/dns/relay-transport.js';
import { FakeClock } from '../helpers/fake-clock.js';

/**
 * A relay in memory speaking netrelay's framing: each 'F' request is answered
 * with "<relay n>:<path>:<reads so far>", in order; `hold` delays answers.
 */
class FakeRelay implements RunningRelay {
  readonly input = new PassThrough();
  readonly output = new PassThrough();
  readonly transport: RelayTransport;
  stopped = false;
  idle = false;
  reads = 0;
  hold = false;
  private held: Buffer[] = [];
  private buf = Buffer.alloc(0);

  constructor(readonly n: number, prefetched: readonly string[]) {
    this.input.on('data', (chunk: Buffer) => this.onRequest(chunk));
    this.transport = new RelayTransport(this.input, this.output, prefetched);
  }

  park(idle: boolean): void {
    this.idle = idle;
  }

  stop(): Promise<void> {
    this.stopped = true;
    this.output.end();
    return Promise.resolve();
  }

  /** Bytes in the relay's output nobody asked for (what a hostile writer into its pipe would send). */
  inject(bytes: Buffer): void {
    this.output.write(bytes);
  }

  release(): void {
    this.hold = false;
    for (const r of this.held.splice(0)) this.output.write(r);
  }

  private onRequest(chunk: Buffer): void {
    this.buf = Buffer.concat([this.buf, chunk]);
    while (this.buf.length >= 4 && this.buf.length >= 4 + this.buf.readUInt32BE(0)) {
      const len = this.buf.readUInt32BE(0);
      const body = this.buf.subarray(4, 4 + len);
      this.buf = this.buf.subarray(4 + len);
      const text = Buffer.from(`${this.n}:${body.subarray(1).toString()}:${++this.reads}`);
      const head = Buffer.alloc(5);
      head.writeUInt32BE(text.length + 1, 0);
      const reply = Buffer.concat([head, text]);
      if (this.hold) this.held.push(reply);
      else this.output.write(reply);
    }
  }
}

class FakeLauncher implements RelayLauncher {
  readonly started: FakeRelay[] = [];
  start(): Promise<RunningRelay> {
    const r = new FakeRelay(this.started.length + 1, []);
    r.transport.prefetch(PREFETCH); // as ZygoteRelayLauncher's spawn frame does
    this.started.push(r);
    return Promise.resolve(r);
  }
}

/** `random`: what Random.next answers, in turn (0: no jitter, each relay reused for relayReuseMs). */
function setup(dns: Partial<RelayPoolConfig> = {}, random: number[] = [0]) {
  const clock = new FakeClock();
  const listeners: Array<(c: Context) => void> = [];
  const releases: Array<(c: Context) => void> = [];
  const contexts = {
    onInitExit: (l: (c: Context) => void) => listeners.push(l),
    onRelease: (l: (c: Context) => void) => releases.push(l),
  } as unknown as ContextTable;
  const launcher = new FakeLauncher();
  let draws = 0;
  const rng = { next: () => random[draws++ % random.length]! };
  const pool = new RelayPool(launcher, { ...defaultConfig(), dns: { relayIdleMs: 5000, ...dns } }, clock, contexts, new Metrics(), clock, rng);
  const ctx = (id: string) => ({ id, state: 'live', namespaces: {} }) as unknown as Context;
  return {
    pool, launcher, ctx, clock, advance: (ms: number) => clock.advance(ms),
    exit: (c: Context) => listeners.forEach((l) => l(c)), release: (c: Context) => releases.forEach((l) => l(c)),
  };
}

/** What an upcall does with its relay: read both files, then give it back. */
async function upcall(pool: RelayPool, c: Context, ok = true): Promise<{ reused: boolean; texts: string[] }> {
  const lease = await pool.acquire(c);
  const texts = [];
  for (const path of PREFETCH) {
    const r = await lease.transport.readFile(path);
    assert.ok(r.ok);
    texts.push(r.text);
  }
  lease.release(ok);
  return { reused: lease.reused, texts };
}

describe('RelayTransport', () => {
  test('pipelined requests get their own replies, in order', async () => {
    const relay = new FakeRelay(7, []);
    const [a, b, c] = await Promise.all(['/a', '/b', '/c'].map((p) => relay.transport.readFile(p)));
    assert.deepEqual([a, b, c], [{ ok: true, text: '7:/a:1' }, { ok: true, text: '7:/b:2' }, { ok: true, text: '7:/c:3' }]);
    assert.equal(relay.transport.settled, true);
  });

  test('unsettled while a reply or a prefetched file is outstanding; failed on a reply nobody asked for', async () => {
    const relay = new FakeRelay(1, []);
    relay.hold = true;
    const pending = relay.transport.readFile('/x');
    assert.equal(relay.transport.settled, false, 'a request in flight');
    relay.release();
    await pending;
    assert.equal(relay.transport.settled, true);
    relay.transport.prefetch(['/etc/hosts']);
    await sleep(5);
    assert.equal(relay.transport.settled, false, 'a prefetched reply nobody claimed');
    assert.equal((await relay.transport.readFile('/etc/hosts')).ok, true);
    assert.equal(relay.transport.settled, true);
    relay.inject(Buffer.from([0, 0, 0, 2, 0, 0x41]));
    await sleep(5);
    assert.equal(relay.transport.settled, false);
    assert.match(String(relay.transport.failure), /nobody asked for/);
    await assert.rejects(relay.transport.readFile('/y'), /nobody asked for/);
  });

  test('the relay ending fails what waits, with E_SPAWN', async () => {
    const relay = new FakeRelay(1, []);
    relay.hold = true;
    const pending = relay.transport.readFile('/x');
    relay.output.end();
    await assert.rejects(pending, (e: Error & { code?: string }) => e.code === 'E_SPAWN');
  });
});

describe('RelayPool', () => {
  test('a relay is reused by the next upcall of its context, and the files are read again', async () => {
    const { pool, launcher, ctx } = setup();
    const c = ctx('c1');
    const first = await upcall(pool, c);
    assert.deepEqual(first, { reused: false, texts: ['1:/etc/hosts:1', '1:/etc/resolv.conf:2'] });
    assert.equal(pool.idle, 1);
    assert.equal(launcher.started[0]!.idle, true, 'parked: counts against no active upcall slot');
    const second = await upcall(pool, c);
    assert.deepEqual(second, { reused: true, texts: ['1:/etc/hosts:3', '1:/etc/resolv.conf:4'] });
    assert.equal(launcher.started.length, 1);
    assert.equal(launcher.started[0]!.stopped, false);
    pool.close();
    assert.equal(launcher.started[0]!.stopped, true, 'close() stops idle relays');
  });

  test('never across contexts; concurrent upcalls get their own relays', async () => {
    const { pool, launcher, ctx } = setup();
    await upcall(pool, ctx('c1'));
    const other = await upcall(pool, ctx('c2'));
    assert.equal(other.reused, false);
    const [x, y] = await Promise.all([pool.acquire(ctx('c1')), pool.acquire(ctx('c1'))]);
    assert.deepEqual([x.reused, y.reused], [true, false]);
    assert.notEqual(x.transport, y.transport);
    assert.equal(launcher.started.length, 3);
    pool.close();
  });

  test('not reused past relayReuseMs after its start, nor after a failed upcall, nor unsettled', async () => {
    const { pool, launcher, ctx, advance } = setup({ relayReuseMs: 2000 });
    const c = ctx('c1');
    await upcall(pool, c);
    advance(1999);
    assert.equal((await upcall(pool, c)).reused, true);
    advance(1);
    assert.equal((await upcall(pool, c)).reused, false, 'aged out');
    assert.equal(launcher.started[0]!.stopped, true);

    await upcall(pool, c, false);
    assert.equal(launcher.started[1]!.stopped, true, 'a failed upcall stops its relay');
    assert.equal(pool.idle, 0);

    const lease = await pool.acquire(c);
    void lease.transport.readFile('/etc/hosts'); // resolv.conf left unclaimed
    lease.release(true);
    assert.equal(launcher.started[2]!.stopped, true, 'unsettled: stopped, not kept');
    pool.close();
  });

  test('each relay\'s reuse window is relayReuseMs less up to a quarter at random: relays started together are not replaced together', async () => {
    const { pool, launcher, ctx, advance } = setup({ relayReuseMs: 2000 }, [0.999, 0]);
    const [a, b] = [ctx('a'), ctx('b')];
    await upcall(pool, a); // window 2000 - 499 = 1501 ms
    await upcall(pool, b); // window 2000 ms
    advance(1500);
    assert.deepEqual([(await upcall(pool, a)).reused, (await upcall(pool, b)).reused], [true, true]);
    advance(1);
    assert.deepEqual([(await upcall(pool, a)).reused, (await upcall(pool, b)).reused], [false, true], "a's shorter window has ended");
    assert.equal(launcher.started.length, 3);
    pool.close();
  });

  test('relayReuseMs 0: a new relay for every upcall', async () => {
    const { pool, launcher, ctx } = setup({ relayReuseMs: 0 });
    const c = ctx('c1');
    for (let i = 0; i < 3; i++) assert.equal((await upcall(pool, c)).reused, false);
    assert.equal(launcher.started.length, 3);
    assert.ok(launcher.started.every((r) => r.stopped));
  });

  test('idle relays end after relayIdleMs (or when they reach relayReuseMs, if sooner), on the clock, not before', async () => {
    const { pool, launcher, ctx, clock } = setup({ relayIdleMs: 20 });
    await upcall(pool, ctx('c1'));
    assert.equal(pool.idle, 1);
    clock.advance(19);
    assert.equal(pool.idle, 1, 'not before relayIdleMs');
    clock.advance(1);
    assert.equal(pool.idle, 0);
    assert.equal(launcher.started[0]!.stopped, true);
    assert.equal(clock.pending, 0);
    const reuse = setup({ relayIdleMs: 1000, relayReuseMs: 300 });
    await upcall(reuse.pool, reuse.ctx('c2'));
    reuse.clock.advance(299);
    assert.equal(reuse.pool.idle, 1);
    reuse.clock.advance(1);
    assert.equal(reuse.pool.idle, 0, 'a relay too old to be reused is not kept idle');
  });

  test('a relay taken from the pool is no longer timed: its idle timer is cancelled, a new one starts when it is parked again', async () => {
    const { pool, ctx, clock } = setup({ relayIdleMs: 20 });
    const c = ctx('c1');
    await upcall(pool, c);
    clock.advance(15);
    assert.equal((await upcall(pool, c)).reused, true);
    assert.equal(clock.pending, 1, 'the first timer was cancelled; one new one');
    clock.advance(15);
    assert.equal(pool.idle, 1, '30 ms after the first parking, 15 after the second: still idle');
    clock.advance(5);
    assert.equal(pool.idle, 0);
  });

  test('caps: per context, and in all (the least recently parked goes first)', async () => {
    const { pool, launcher, ctx } = setup({ relaysIdlePerContext: 2, relaysIdle: 3 });
    const c = ctx('c1');
    const leases = await Promise.all([1, 2, 3].map(() => pool.acquire(c)));
    for (const l of leases) {
      for (const p of PREFETCH) await l.transport.readFile(p);
      l.release(true);
    }
    assert.equal(pool.idle, 2);
    assert.equal(launcher.started[2]!.stopped, true, 'the third over the per-context cap');
    await upcall(pool, ctx('c2'));
    await upcall(pool, ctx('c3'));
    assert.equal(pool.idle, 3);
    assert.equal(launcher.started[0]!.stopped, true, 'the oldest parked went first');
    assert.equal(launcher.started[1]!.stopped, false);
    pool.close();
  });

  test("a context's init exit stops its idle relays, and only its own", async () => {
    const { pool, launcher, ctx, exit } = setup();
    const c1 = ctx('c1');
    await upcall(pool, c1);
    await upcall(pool, ctx('c2'));
    (c1 as { state: string }).state = 'init-exited';
    exit(c1);
    assert.equal(launcher.started[0]!.stopped, true);
    assert.equal(launcher.started[1]!.stopped, false);
    assert.equal(pool.idle, 1);
    pool.close();
  });

  test('a context let go (its last registration removed) stops its idle relays', async () => {
    const { pool, launcher, ctx, release } = setup();
    const c1 = ctx('c1');
    await upcall(pool, c1);
    await upcall(pool, ctx('c2'));
    release(c1);
    assert.deepEqual(launcher.started.map((r) => r.stopped), [true, false]);
    pool.close();
  });

  test('a kept relay that died while idle is not handed out', async () => {
    const { pool, launcher, ctx } = setup();
    const c = ctx('c1');
    await upcall(pool, c);
    launcher.started[0]!.output.end(); // killed inside the container
    await sleep(5);
    assert.equal((await upcall(pool, c)).reused, false);
    assert.equal(launcher.started.length, 2);
    pool.close();
  });
});
