/**
 * ZygoteRunner's queue with a fake zygote (tests/helpers/fake-zygote.ts):
 * first come first served within a context, the zygote's capacity (idle
 * sessions included), the bounded queue, requests refused before anything is
 * sent, control frames held until their spawn frame went out, cancellation by
 * stop() and by the watchdog, a zygote that dies, and a started upcall whose
 * pid names another process by the time the runner pins it.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { afterEach, mock, test } from 'node:test';
import type { BrokerError } from '../../src/common/errors.js';
import type { Libc } from '../../src/ns/libc.js';
import type { UpcallSession, ZygoteRunner } from '../../src/upcall/zygote-runner.js';
import { FakeZygote, runnerWith as newRunner, tick, upcall } from '../helpers/fake-zygote.js';
import { realLibc } from '../helpers/native.js';

const codeOf = (p: Promise<unknown>): Promise<string> => p.then(() => 'ok', (e: BrokerError) => e.code);
/** Every runner a test starts is stopped after it, passed or failed: no watchdog timer outlives its test. */
const runners: ZygoteRunner[] = [];
afterEach(async () => {
  for (const r of runners.splice(0)) await r.stop();
});
function runnerWith(...args: Parameters<typeof newRunner>): ZygoteRunner {
  const r = newRunner(...args);
  runners.push(r);
  return r;
}

/** A test whose runner never settles a request must fail, not hang the suite (not a timing assertion). */
const BOUNDED = { timeout: 60_000 };
/** How `p` has settled by the next turn of the event loop ('pending' if not). */
const codeNow = (p: Promise<unknown>): Promise<string> => Promise.race([codeOf(p), tick().then(() => 'pending')]);

test('within one context, requests go in the order they came, and a freed slot goes to the oldest waiting', BOUNDED, async () => {
  const zygote = new FakeZygote();
  const runner = runnerWith(zygote);
  const all = Array.from({ length: 70 }, () => runner.run(upcall(111)).catch(() => undefined));
  await tick();
  const ids = zygote.sent.map((s) => s.id);
  assert.equal(ids.length, 64);
  assert.deepEqual(ids, [...ids].sort((a, b) => a - b), 'sent in order');
  zygote.exit(ids[5]!);
  zygote.exit(ids[0]!);
  await tick();
  assert.deepEqual(zygote.sent.slice(64).map((s) => s.id), [ids[63]! + 1, ids[63]! + 2]);
  await runner.stop();
  await Promise.all(all);
});

test('a freed slot goes to the waiting context with the fewest upcalls running, though it came later', BOUNDED, async () => {
  const zygote = new FakeZygote();
  const runner = runnerWith(zygote);
  const run = (ns: number) => runner.run(upcall(ns)).catch(() => undefined);
  const all = [...Array.from({ length: 62 }, () => run(1)), ...Array.from({ length: 2 }, () => run(2))];
  await tick();
  assert.equal(zygote.sent.length, 64);
  for (const ns of [1, 1, 1, 2, 2, 2]) all.push(run(ns)); // all wait: each context has 2 or more running
  await tick();
  assert.equal(zygote.sent.length, 64);
  const order: number[] = [];
  for (let i = 0; i < 4; i++) {
    zygote.exit(zygote.sent[i]!.id); // one of context 1 ends
    await tick();
    order.push(...zygote.sent.slice(64 + order.length).map((s) => s.pidns));
  }
  assert.deepEqual(order, [2, 2, 2, 1], 'context 2 (2 to 4 running) before context 1 (about 60)');
  await runner.stop();
  await Promise.all(all);
});

test('idle sessions take none of the 64 active slots: another context\'s 64 upcalls all go at once', BOUNDED, async () => {
  const zygote = new FakeZygote();
  const runner = runnerWith(zygote);
  const sessions = Array.from({ length: 64 }, () => runner.open(upcall(7)));
  await tick();
  for (const s of sessions) s.setIdle(true);
  const all = Array.from({ length: 65 }, () => runner.run(upcall(8)).catch(() => undefined));
  await tick();
  assert.equal(zygote.sent.filter((s) => s.pidns === 8).length, 64, 'not only the 2 reserved per context');
  // One session back to active: it holds an active slot again, so a freed slot does not let the 65th in.
  sessions[0]!.setIdle(false);
  zygote.exit(zygote.sent.find((s) => s.pidns === 8)!.id);
  await tick();
  assert.equal(zygote.sent.filter((s) => s.pidns === 8).length, 64);
  await runner.stop();
  await Promise.all([...all, ...sessions.map((s) => s.outcome.catch(() => undefined))]);
});

test('the zygote holds at most 480 requests, idle ones included', BOUNDED, async () => {
  const zygote = new FakeZygote();
  const runner = runnerWith(zygote);
  const sessions: UpcallSession[] = [];
  while (sessions.length < 480) {
    const batch = Array.from({ length: Math.min(64, 480 - sessions.length) }, () => runner.open(upcall(7)));
    await tick();
    for (const s of batch) s.setIdle(true);
    sessions.push(...batch);
  }
  await tick();
  assert.equal(zygote.sent.length, 480, 'every session was sent while the others were idle');
  const waiting = runner.run(upcall(8));
  waiting.catch(() => undefined);
  await tick();
  assert.equal(zygote.sent.length, 480, 'the 481st waits although no active slot is taken');
  zygote.exit(zygote.sent[0]!.id);
  await tick();
  assert.equal(zygote.sent.at(-1)!.pidns, 8);
  // Back to active: idle sessions count against the 64 again.
  for (const s of sessions.slice(1, 65)) s.setIdle(false);
  const held = runner.run(upcall(7));
  held.catch(() => undefined);
  await tick();
  assert.equal(zygote.sent.length, 481);
  await runner.stop();
  await Promise.all([waiting, ...sessions.map((s) => s.outcome)].map((p) => p.catch(() => undefined)));
});

test('past 4,096 waiting, a request is refused at once with E_BUSY', BOUNDED, async () => {
  const zygote = new FakeZygote();
  const runner = runnerWith(zygote);
  const all = Array.from({ length: 64 + 4096 }, () => runner.run(upcall(5)).catch(() => undefined));
  await tick();
  const [five, six] = [runner.run(upcall(5)), runner.run(upcall(6))];
  assert.equal(await codeNow(five), 'E_BUSY');
  assert.equal(await codeNow(six), 'E_BUSY', 'the queue bound holds for every context');
  await runner.stop();
  await Promise.all(all);
});

test('a request out of range is refused with E_BAD_REQUEST before anything reaches the zygote', BOUNDED, async () => {
  const zygote = new FakeZygote();
  let spawned = 0;
  const runner = runnerWith(new Proxy([zygote], { get: (t, k) => (k === 'shift' ? () => (spawned++, zygote) : Reflect.get(t, k)) }) as FakeZygote[]);
  const bad = [
    upcall(1, { timeoutMs: 0 }),
    upcall(1, { timeoutMs: 1.5 }),
    upcall(1, { outputCap: -1 }),
    upcall(1, { outputCap: 2 ** 40 }),
    upcall(1, { mode: 'exec', argv: [] }),
    upcall(1, { builtin: '' }),
    upcall(1, { argv: Array.from({ length: 10_000 }, () => 'a') }),
  ];
  for (const req of bad) assert.equal(await codeNow(runner.run(req)), 'E_BAD_REQUEST', JSON.stringify({ ...req, argv: req.argv.length }));
  assert.equal(spawned, 0, 'no zygote was started');
  assert.equal(zygote.frames.length, 0);
  await runner.stop();
});

test('stdin and kill written to a session still waiting are held, and sent after its spawn frame', BOUNDED, async () => {
  const zygote = new FakeZygote();
  const runner = runnerWith(zygote);
  const busy = Array.from({ length: 64 }, () => runner.run(upcall(9)).catch(() => undefined));
  const session = runner.open(upcall(9));
  session.outcome.catch(() => undefined);
  session.stdin.write('hello');
  session.kill();
  await tick();
  assert.equal(zygote.frames.filter((f) => f.id === 65).length, 0, 'nothing of the waiting session reached the zygote');
  zygote.exit(zygote.sent[0]!.id);
  await tick();
  assert.deepEqual(zygote.frames.filter((f) => f.id === 65).map((f) => f.op), ['spawn', 'stdin', 'kill']);
  assert.equal(zygote.frames.find((f) => f.id === 65 && f.op === 'stdin')?.data?.toString(), 'hello', 'stdin goes raw, in a data frame');
  await runner.stop();
  await Promise.all(busy);
});

test('a session\'s stdout comes raw in data frames, in order; a data frame for no request is ignored', BOUNDED, async () => {
  const zygote = new FakeZygote();
  const runner = runnerWith(zygote);
  const session = runner.open(upcall(9));
  const got: Buffer[] = [];
  session.stdout.on('data', (b: Buffer) => got.push(b));
  await tick();
  const id = zygote.sent[0]!.id;
  zygote.stdoutData(id, Buffer.from([0, 1, 0xff]));
  zygote.stdoutData(id + 1000, Buffer.from('nobody'));
  zygote.stdoutData(id, Buffer.from('{"id":1}'));
  zygote.exit(id);
  await session.outcome;
  assert.deepEqual(Buffer.concat(got), Buffer.concat([Buffer.from([0, 1, 0xff]), Buffer.from('{"id":1}')]));
  await runner.stop();
});

test('stop() rejects the requests sent and those still waiting with E_SPAWN; the zygote reads EOF', BOUNDED, async () => {
  const zygote = new FakeZygote();
  const runner = runnerWith(zygote);
  const all = Array.from({ length: 66 }, () => codeOf(runner.run(upcall(4))));
  await tick();
  const closed = new Promise((r) => zygote.once('close', r));
  await runner.stop();
  assert.deepEqual(new Set(await Promise.all(all)), new Set(['E_SPAWN']));
  await closed;
  assert.equal(zygote.sent.length, 64, 'what waited was never sent');
});

test('a request the zygote never answers ends E_UPCALL_TIMEOUT 10 s past its timeout, and its slot goes to the next', BOUNDED, async () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const zygote = new FakeZygote();
    const runner = runnerWith(zygote);
    const first = codeOf(runner.run(upcall(3, { timeoutMs: 1000 })));
    const rest = Array.from({ length: 64 }, () => runner.run(upcall(3)).catch(() => undefined));
    await tick();
    assert.equal(zygote.sent.length, 64);
    mock.timers.tick(1000 + 9_999);
    await tick();
    assert.equal(zygote.sent.length, 64, 'not before timeoutMs + 10 s');
    mock.timers.tick(1);
    assert.equal(await Promise.race([first, tick().then(() => 'pending')]), 'E_UPCALL_TIMEOUT');
    await tick();
    assert.equal(zygote.sent.length, 65, 'the freed slot was used');
    await runner.stop();
    await Promise.all(rest);
  } finally {
    mock.timers.reset();
  }
});

test('when the zygote dies its requests fail E_SPAWN, those waiting go to a new zygote, and restarts counts it', BOUNDED, async () => {
  const [a, b] = [new FakeZygote(), new FakeZygote()];
  const runner = runnerWith([a, b]);
  const sent = Array.from({ length: 64 }, () => codeOf(runner.run(upcall(2))));
  const waiting = runner.run(upcall(2));
  await tick();
  a.die();
  assert.deepEqual(new Set(await Promise.all(sent)), new Set(['E_SPAWN']));
  await tick();
  assert.equal(runner.restarts, 1);
  assert.equal(b.sent.length, 1, 'the waiting request went to the new zygote');
  b.exit(b.sent[0]!.id);
  assert.equal((await waiting).code, 0);
  await runner.stop();
});

test('an error event keeps a known error code and turns an unknown one into E_SPAWN; events for no request are ignored', BOUNDED, async () => {
  const zygote = new FakeZygote();
  const runner = runnerWith(zygote);
  const known = codeOf(runner.run(upcall(1)));
  const unknown = codeOf(runner.run(upcall(1)));
  const other = runner.run(upcall(1));
  await tick();
  const [k, u, o] = zygote.sent.map((s) => s.id);
  zygote.event({ id: 999, event: 'error', code: 'E_NOT_FOUND', step: 'x', errno: 0, message: 'not ours' });
  zygote.event({ id: null, event: 'error', code: 'E_BAD_REQUEST', step: 'x', errno: 0, message: 'unreadable' });
  zygote.event({ id: k, event: 'error', code: 'E_NOT_FOUND', step: 'exec', errno: 2, message: 'no such program' });
  zygote.event({ id: u, event: 'error', code: 'E_MADE_UP', step: 'exec', errno: 0, message: '?' });
  assert.deepEqual([await known, await unknown], ['E_NOT_FOUND', 'E_SPAWN']);
  zygote.exit(o!);
  assert.equal((await other).code, 0, 'the stray events settled nothing else');
  await runner.stop();
});

test('an upcall whose pid names another process when it is reported started is not pinned, so not killed when the zygote dies', BOUNDED, async () => {
  const zygote = new FakeZygote();
  const signals: number[] = [];
  const libc = realLibc();
  const spy: Libc = { ...libc, pidfdSendSignal: (fd, sig, flags) => (signals.push(sig), libc.pidfdSendSignal(fd, sig, flags)) };
  const runner = runnerWith(zygote, spy);
  const bystander = spawn('sleep', ['30'], { stdio: 'ignore' });
  try {
    const outcome = codeOf(runner.run(upcall(3)));
    await tick();
    // The zygote read start time 1 for this pid: the process that has it now is someone else.
    zygote.event({ id: zygote.sent[0]!.id, event: 'started', pid: bystander.pid, startTime: '1' });
    await tick();
    zygote.die();
    assert.equal(await outcome, 'E_SPAWN');
    assert.deepEqual(signals, [], 'no signal sent');
    assert.equal(bystander.exitCode ?? bystander.signalCode, null);
    assert.doesNotThrow(() => process.kill(bystander.pid!, 0), 'the bystander is alive');
  } finally {
    bystander.kill('SIGKILL');
    await runner.stop();
  }
});
