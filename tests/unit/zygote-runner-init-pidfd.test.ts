/**
 * ZygoteRunner hands the zygote init's pidfd by number (the zygote takes it
 * with pidfd_getfd): the spawn frame names the runner's own dup of the held
 * pidfd, and that dup stays open until the request's final event, so the
 * number cannot name another file while the zygote may still read the frame.
 * The zygote side: tests/integration/zygote-init-pidfd.test.ts.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import type { BrokerError } from '../../src/common/errors.js';
import type { Pidfd } from '../../src/ns/pidfd.js';
import type { UpcallRequest, ZygoteRunner } from '../../src/upcall/zygote-runner.js';
import { FakeZygote, runnerWith as newRunner, tick, upcall } from '../helpers/fake-zygote.js';

const runners: ZygoteRunner[] = [];
afterEach(async () => {
  for (const r of runners.splice(0)) await r.stop();
});
function runnerWith(zygote: FakeZygote): ZygoteRunner {
  const r = newRunner(zygote);
  runners.push(r);
  return r;
}

/** A held init pidfd whose dups record their fd numbers and whether they are still open. */
function countingInit(closed = false) {
  const dups = new Map<number, boolean>();
  const init = {
    closed,
    pid: 77,
    dup() {
      const fd = 500 + dups.size;
      dups.set(fd, true);
      return { fd, pid: 77, get closed() { return !dups.get(fd); }, close() { dups.set(fd, false); } };
    },
  } as unknown as Pidfd;
  const open = () => [...dups].filter(([, o]) => o).map(([fd]) => fd);
  return { init, dups, open };
}

const requestFor = (init: Pidfd): UpcallRequest => {
  const base = upcall(4026532001);
  return { ...base, target: { ...base.target, init } };
};
const codeOf = (p: Promise<unknown>): Promise<string> => p.then(() => 'ok', (e: BrokerError) => e.code);

test('the spawn frame names a dup of init\'s pidfd, open until the exit event and closed then', async () => {
  const zygote = new FakeZygote();
  const runner = runnerWith(zygote);
  const { init, open } = countingInit();
  const done = runner.run(requestFor(init));
  await tick();
  const spawn = zygote.frames.find((f) => f.op === 'spawn')!;
  assert.deepEqual(open(), [spawn.initPidfd], 'the frame names the one open dup');
  zygote.event({ id: spawn.id, event: 'started', pid: 1234 });
  await tick();
  assert.deepEqual(open(), [spawn.initPidfd], '"started" is not final: the dup stays open');
  zygote.exit(spawn.id);
  assert.equal(await codeOf(done), 'ok');
  assert.deepEqual(open(), [], 'closed at the final event');
});

test('an error event, and stop() with requests sent and queued, close every dup', async () => {
  const zygote = new FakeZygote();
  const runner = runnerWith(zygote);
  const { init, dups, open } = countingInit();
  const failed = runner.run(requestFor(init));
  await tick();
  const id = zygote.frames.find((f) => f.op === 'spawn')!.id;
  zygote.event({ id, event: 'error', code: 'E_INIT_EXITED', native: 'E_INIT_EXITED', step: 'initPidfd', errno: 3, message: 'init exited' });
  assert.equal(await codeOf(failed), 'E_INIT_EXITED');
  assert.deepEqual(open(), []);
  const more = Array.from({ length: 600 }, () => codeOf(runner.run(requestFor(init)))); // beyond the zygote's capacity: some wait queued
  await tick();
  assert.equal(dups.size, 601, 'a dup per request, queued ones included');
  await runner.stop();
  assert.ok((await Promise.all(more)).every((c) => c === 'E_SPAWN'));
  assert.deepEqual(open(), [], 'stop() closed the dups of sent and of queued requests');
});

test('an init pidfd the context has closed: E_INIT_EXITED, and nothing is sent', async () => {
  const zygote = new FakeZygote();
  const runner = runnerWith(zygote);
  const { init, dups } = countingInit(true);
  assert.equal(await codeOf(runner.run(requestFor(init))), 'E_INIT_EXITED');
  await tick();
  assert.equal(zygote.frames.length, 0);
  assert.equal(dups.size, 0);
});
