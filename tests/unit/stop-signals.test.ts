/** The broker's own signals through the Signals token (src/service/stop-signals.ts), with fake delivery. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { untilStopSignal } from '../../src/service/stop-signals.js';
import { FakeSignals } from '../helpers/fake-signals.js';

test('SIGHUP reloads each time and does not stop; SIGTERM stops, and its handlers are gone after', async () => {
  const signals = new FakeSignals();
  let reloads = 0;
  let stopped: NodeJS.Signals | null = null;
  const done = untilStopSignal(signals, () => reloads++).then((s) => (stopped = s));
  signals.raise('SIGHUP');
  signals.raise('SIGHUP');
  await Promise.resolve();
  assert.equal(reloads, 2);
  assert.equal(stopped, null, 'a reload is not a stop');
  assert.equal(signals.raise('SIGTERM'), 1);
  assert.equal(await done, 'SIGTERM');
  assert.equal(signals.raise('SIGTERM'), 0, 'a second SIGTERM meets no handler (Node\'s default: the process ends)');
  assert.equal(signals.raise('SIGINT'), 0);
  assert.equal(signals.raise('SIGHUP'), 1, 'a SIGHUP while stopping still reloads, it does not kill');
  assert.equal(reloads, 3);
});

test('SIGINT stops too', async () => {
  const signals = new FakeSignals();
  const done = untilStopSignal(signals, () => assert.fail('no reload'));
  signals.raise('SIGINT');
  assert.equal(await done, 'SIGINT');
});
