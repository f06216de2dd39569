/**
 * UpcallDispatcher: every upcall holds one of its container's slots, its
 * failure is explained by its context, and it is counted and audited exactly
 * once. Slots and metrics are the real classes; the context and the clock are fakes.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Context } from '../../src/broker/context-table.js';
import { UpcallDispatcher } from '../../src/broker/upcall-dispatcher.js';
import type { UpcallReport } from '../../src/broker/upcall-record.js';
import { UpcallSlots } from '../../src/broker/upcall-slots.js';
import { defaultConfig } from '../../src/common/defaults.js';
import { BrokerError } from '../../src/common/errors.js';
import type { BrokerConfig, Clock } from '../../src/common/tokens.js';
import { NullLoggerFactory } from '../../src/logging/winston-logger-factory.js';
import { DEFAULT_LIMITS } from '../../src/server/limits.js';
import { Metrics } from '../../src/service/metrics.js';

interface Harness {
  dispatcher: UpcallDispatcher;
  metrics: Metrics;
  logs: NullLoggerFactory;
  clock: { t: number };
}

function setup(contextUpcalls = 1): Harness {
  const config = { ...defaultConfig(), limits: { ...DEFAULT_LIMITS, contextUpcalls } } as BrokerConfig;
  const clock = { t: 1000 };
  const fake: Clock = { now: () => clock.t, monotonic: () => clock.t };
  const metrics = new Metrics();
  const logs = new NullLoggerFactory();
  return { dispatcher: new UpcallDispatcher(new UpcallSlots(config), metrics, fake, logs), metrics, logs, clock };
}

/** A context of container `container`; explain() turns E_SPAWN into E_INIT_EXITED (its init is exiting) and counts its calls. */
function contextOf(container: string): Context & { explained: number } {
  const ctx = {
    id: `c-${container}`, container, explained: 0,
    explain: async (err: unknown) => {
      ctx.explained++;
      const e = BrokerError.from(err);
      return e.code === 'E_SPAWN' ? new BrokerError('E_INIT_EXITED', 'the init exited during the upcall') : e;
    },
  };
  return ctx as unknown as Context & { explained: number };
}

const report: UpcallReport<string> = {
  ok: (result, ms) => ({ kind: 'dns', outcome: 'ok', seconds: ms / 1000, event: 'upcall', audit: { result, ms } }),
  failed: (e, ms) => ({ kind: 'dns', outcome: e.code, seconds: ms / 1000, failure: { message: e.message, context: 'c-a' }, event: 'upcall failed', audit: { error: e.code, ms } }),
};

const audits = (h: Harness) => h.logs.lines.filter((l) => l.level === 'audit');

describe('dispatch', () => {
  test('a success is counted once and audited once, with the time the work took', async () => {
    const h = setup();
    const out = await h.dispatcher.dispatch(contextOf('a'), async () => {
      h.clock.t += 250;
      return 'answer';
    }, report);
    assert.equal(out, 'answer');
    assert.deepEqual(h.metrics.upcallCounts(), { 'dns:ok': 1 });
    assert.deepEqual(audits(h).map((l) => [l.message, l.meta]), [['upcall', { result: 'answer', ms: 250 }]]);
    assert.deepEqual(h.metrics.recentFailures(), []);
  });

  test('a failure is explained by the context, counted under its code, audited once and rethrown', async () => {
    const h = setup();
    const ctx = contextOf('a');
    await assert.rejects(h.dispatcher.dispatch(ctx, async () => { throw new BrokerError('E_SPAWN', 'zygote lost the child'); }, report), { code: 'E_INIT_EXITED' });
    assert.equal(ctx.explained, 1);
    assert.deepEqual(h.metrics.upcallCounts(), { 'dns:E_INIT_EXITED': 1 });
    assert.deepEqual(h.metrics.recentFailures().map((f) => [f.type, f.code, f.context]), [['dns', 'E_INIT_EXITED', 'c-a']]);
    assert.deepEqual(audits(h).map((l) => [l.message, l.meta?.['error']]), [['upcall failed', 'E_INIT_EXITED']]);
  });

  test('a plain Error from the work becomes a coded BrokerError (E_INTERNAL), never an uncoded one', async () => {
    const h = setup();
    await assert.rejects(h.dispatcher.dispatch(contextOf('a'), async () => { throw new Error('bug'); }, report), (e: unknown) => e instanceof BrokerError && e.code === 'E_INTERNAL');
    assert.deepEqual(h.metrics.upcallCounts(), { 'dns:E_INTERNAL': 1 });
  });

  test('an outcome of null is audited but not counted (exec)', () => {
    const h = setup();
    h.dispatcher.record({ kind: 'exec', outcome: null, seconds: 0, event: 'upcall', audit: { kind: 'exec' } });
    assert.deepEqual(h.metrics.upcallCounts(), {});
    assert.equal(audits(h).length, 1);
  });
});

describe('slots', () => {
  test('a container at its limit is refused E_BUSY at once, audited and counted as such; the work never runs', async () => {
    const h = setup(1);
    let release!: () => void;
    const first = h.dispatcher.dispatch(contextOf('a'), () => new Promise<string>((r) => { release = () => r('first'); }), report);
    let ran = false;
    await assert.rejects(h.dispatcher.dispatch(contextOf('a'), async () => { ran = true; return 'x'; }, report), { code: 'E_BUSY' });
    assert.equal(ran, false);
    // Another container has its own slots.
    assert.equal(await h.dispatcher.dispatch(contextOf('b'), async () => 'other', report), 'other');
    release();
    assert.equal(await first, 'first');
    // The slot is free again once the first upcall ended, failed or not.
    await assert.rejects(h.dispatcher.run(contextOf('a'), async () => { throw new BrokerError('E_UPCALL_TIMEOUT', 't'); }), { code: 'E_UPCALL_TIMEOUT' });
    assert.equal(await h.dispatcher.run(contextOf('a'), async () => 'again'), 'again');
    assert.deepEqual(h.metrics.upcallCounts(), { 'dns:ok': 2, 'dns:E_BUSY': 1 });
  });

  test('run() holds a slot and explains, but neither counts nor audits (request-key records once per request)', async () => {
    const h = setup();
    const ctx = contextOf('a');
    await assert.rejects(h.dispatcher.run(ctx, async () => { throw new BrokerError('E_SPAWN', 'x'); }), { code: 'E_INIT_EXITED' });
    assert.equal(ctx.explained, 1);
    assert.deepEqual(h.metrics.upcallCounts(), {});
    assert.equal(audits(h).length, 0);
  });
});

test('record(): a key route is counted with the upcall', async () => {
  const h = setup();
  h.dispatcher.record({ kind: 'request-key', outcome: 'negate', seconds: 0.01, failure: { message: 'no rule' }, route: 'walk', event: 'request-key', audit: { action: 'negate' } });
  assert.deepEqual(h.metrics.upcallCounts(), { 'request-key:negate': 1 });
  assert.match(await h.metrics.registry.metrics(), /upcall_broker_key_routes_total\{route="walk"\} 1/);
});
