/**
 * DnsServiceImpl's whole-upcall bound (60 s) on the Timers token: a relay
 * that never answers fails the upcall E_UPCALL_TIMEOUT at 60 s of a fake
 * clock, not before, and its relay is not kept.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BrokerError } from '../../src/common/errors.js';
import { NullLoggerFactory } from '../../src/logging/winston-logger-factory.js';
import type { UpcallContext } from '../../src/upcall/api/upcall-context.js';
import { DnsServiceImpl } from '../../src/upcall/dns/dns-service-impl.js';
import type { RelayPool } from '../../src/upcall/dns/relay-pool.js';
import type { RelayTransport } from '../../src/upcall/dns/relay-transport.js';
import { FakeClock } from '../helpers/fake-clock.js';

/** A deadline that does not fire must fail the test, not hang the suite (not a timing assertion). */
const BOUNDED = { timeout: 60_000 };
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

function silentPool(): { pool: RelayPool; released: boolean[]; reads: string[] } {
  const released: boolean[] = [];
  const reads: string[] = [];
  const transport = { readFile: (path: string) => (reads.push(path), new Promise(() => undefined)) } as unknown as RelayTransport;
  const pool = { acquire: async () => ({ transport, reused: false, release: (ok: boolean) => released.push(ok) }) } as unknown as RelayPool;
  return { pool, released, reads };
}

test('a DNS upcall whose relay never answers ends E_UPCALL_TIMEOUT at 60 s of the clock, and its relay is let go', BOUNDED, async () => {
  const clock = new FakeClock();
  const { pool, released, reads } = silentPool();
  const dns = new DnsServiceImpl(pool, clock, new NullLoggerFactory(), clock);
  const end: { value: unknown } = { value: null };
  const upcall = dns.resolve({ id: 'c1' } as unknown as UpcallContext, 'example.test', '').then((r) => (end.value = r), (e: unknown) => (end.value = e));
  await turn();
  assert.deepEqual(reads, ['/etc/hosts'], 'waiting on the relay');
  assert.equal(clock.pending, 1, 'one deadline');
  clock.advance(59_999);
  await turn();
  assert.equal(end.value, null, 'not before 60 s');
  clock.advance(1);
  const result: unknown = await upcall;
  assert.ok(result instanceof BrokerError && result.code === 'E_UPCALL_TIMEOUT', String(result));
  assert.deepEqual(released, [false], 'the relay is stopped, not kept');
});

test('an upcall that ends cancels its deadline', BOUNDED, async () => {
  const clock = new FakeClock();
  const released: boolean[] = [];
  const transport = { readFile: async () => ({ ok: false, errno: 'EACCES' }) } as unknown as RelayTransport;
  const pool = { acquire: async () => ({ transport, reused: false, release: (ok: boolean) => released.push(ok) }) } as unknown as RelayPool;
  const dns = new DnsServiceImpl(pool, clock, new NullLoggerFactory(), clock);
  await assert.rejects(dns.resolve({ id: 'c1' } as unknown as UpcallContext, 'example.test', ''), { code: 'E_BAD_REQUEST' });
  assert.equal(clock.pending, 0, 'no deadline left behind');
  assert.deepEqual(released, [false]);
});
