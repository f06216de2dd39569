/**
 * ZygoteRunner with a fake zygote that never answers (issue 16, findings 3
 * and 7): one context holding every active slot does not keep another
 * context's upcall from being sent, and an upcall orphaned by the zygote's
 * death is killed through a pidfd (never by number).
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { PassThrough, Writable } from 'node:stream';
import { test } from 'node:test';
import { defaultConfig } from '../../src/common/defaults.js';
import { NullLoggerFactory } from '../../src/logging/winston-logger-factory.js';
import type { Libc } from '../../src/ns/libc.js';
import { SystemClock } from '../../src/platform/node-platform.js';
import { type UpcallRequest, ZygoteRunner } from '../../src/upcall/zygote-runner.js';
import { realLibc } from '../helpers/native.js';

/** A zygote that records the spawn frames it is sent and answers only what the test makes it. */
class FakeZygote extends EventEmitter {
  readonly sent: Array<{ id: number; pidns: number }> = [];
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  readonly pid = 1;
  private buffered = Buffer.alloc(0);
  private dead = false;
  readonly stdin = new Writable({
    write: (chunk: Buffer, _enc, cb) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      while (this.buffered.length >= 4 && this.buffered.length >= 4 + this.buffered.readUInt32BE(0)) {
        const frame = JSON.parse(this.buffered.subarray(4, 4 + this.buffered.readUInt32BE(0)).toString()) as { op: string; id: number; pidns: number };
        this.buffered = this.buffered.subarray(4 + this.buffered.readUInt32BE(0));
        if (frame.op === 'spawn') this.sent.push({ id: frame.id, pidns: frame.pidns });
      }
      cb();
    },
  });

  constructor() {
    super();
    this.stdin.once('finish', () => setImmediate(() => this.die())); // as the zygote exits at EOF
  }

  event(ev: Record<string, unknown>): void {
    const body = Buffer.from(JSON.stringify(ev));
    const head = Buffer.alloc(4);
    head.writeUInt32BE(body.length);
    this.stdout.write(Buffer.concat([head, body]));
  }

  die(): void {
    if (this.dead) return;
    this.dead = true;
    this.emit('close', null, 'SIGKILL');
  }

  kill(): boolean {
    setImmediate(() => this.die());
    return true;
  }

  unref(): void {}
}

function runnerWith(zygote: FakeZygote, libc?: Libc): ZygoteRunner {
  return new ZygoteRunner({ spawn: () => zygote as unknown as ChildProcess }, defaultConfig(), new NullLoggerFactory(), new SystemClock(), libc);
}

const upcall = (pidnsIno: number): UpcallRequest => ({
  target: { initPid: 1, initStartTime: 1, pidnsIno, host: false },
  mode: 'builtin', builtin: 'echo-context', argv: ['x'], timeoutMs: 60_000, outputCap: 1024,
});

const tick = () => new Promise((r) => setImmediate(r));

test('a context holding all 64 active slots does not hold back another context\'s upcall', async () => {
  const zygote = new FakeZygote();
  const runner = runnerWith(zygote, {} as Libc);
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
