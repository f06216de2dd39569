/**
 * ZygoteRunner with a fake zygote that never answers (issue 16, findings 3
 * and 7): one context holding every active slot does not keep another
 * context's upcall from being sent, and an upcall orphaned by the zygote's
 * death is killed through a pidfd (never by number).
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import type { Libc } from '../../src/ns/libc.js';
import { FakeZygote, runnerWith, tick, upcall } from '../helpers/fake-zygote.js';
import { realLibc } from '../helpers/native.js';

test('a context holding all 64 active slots does not hold back another context\'s upcall', async () => {
  const zygote = new FakeZygote();
  const runner = runnerWith(zygote);
  const flood = Array.from({ length: 80 }, () => runner.run(upcall(111)).catch(() => undefined));
  await tick();
  assert.equal(zygote.sent.length, 64, 'the flooding context gets the 64 shared slots');
  const other = runner.run(upcall(222)).catch(() => undefined);
  const third = runner.run(upcall(222)).catch(() => undefined);
  const fourth = runner.run(upcall(222)).catch(() => undefined);
  await tick();
  assert.deepEqual(zygote.sent.slice(64).map((s) => s.pidns), [222, 222], 'another context\'s first two go at once; the rest wait their turn');
  // A slot freed goes to the context with fewer upcalls running, not to the oldest request.
  zygote.event({ id: zygote.sent[0]!.id, event: 'error', code: 'E_SPAWN', step: 'test', errno: 0, message: 'done' });
  await tick();
  assert.equal(zygote.sent.at(-1)!.pidns, 222);
  await runner.stop();
  await Promise.all([...flood, other, third, fourth]);
});

test('an upcall whose zygote died is killed through a pidfd, with the process group it leads', async () => {
  const zygote = new FakeZygote();
  const calls: Array<[number, number]> = [];
  const libc = realLibc();
  const spy: Libc = { ...libc, pidfdSendSignal: (fd, sig, flags) => (calls.push([sig, flags]), libc.pidfdSendSignal(fd, sig, flags)) };
  const runner = runnerWith(zygote, spy);
  const child = spawn('sleep', ['30'], { detached: true, stdio: 'ignore' }); // leads its own process group, as an upcall does
  const exited = new Promise((r) => child.once('exit', (_code, signal) => r(signal)));
  const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
  const startTime = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  const outcome = runner.run(upcall(333)).then(() => 'ok', (e: { code: string }) => e.code);
  await tick();
  zygote.event({ id: zygote.sent[0]!.id, event: 'started', pid: child.pid, startTime });
  await tick();
  zygote.die();
  assert.equal(await outcome, 'E_SPAWN');
  assert.equal(await exited, 'SIGKILL');
  assert.deepEqual(calls[0], [9, 4], 'SIGKILL with PIDFD_SIGNAL_PROCESS_GROUP');
  await runner.stop();
});
