/**
 * ZygoteRunner's socket sessions (req.socket, the DNS relay): the runner makes
 * a socketpair, keeps one end as the session's stdin/stdout and names the other
 * by number in the spawn frame (flag socket, stdioFd), as it names init's
 * pidfd; the zygote takes it with pidfd_getfd and makes it the program's fds 0
 * and 1. Here the fake zygote takes it with a dup. The runner's copy stays
 * open until "started" or the final event; the session's stdout ends with the
 * outcome. The zygote side: tests/integration/dns-relay-pool.test.ts and
 * native-bindings/test/zygote-wire-selftest.c.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { readlinkSync } from 'node:fs';
import { Socket } from 'node:net';
import { afterEach, test } from 'node:test';
import type { BrokerError } from '../../src/common/errors.js';
import { loadLibc } from '../../src/ns/libc.js';
import type { ZygoteRunner } from '../../src/upcall/zygote-runner.js';
import { FakeZygote, runnerWith as newRunner, tick, upcall } from '../helpers/fake-zygote.js';

const libc = loadLibc();
const runners: ZygoteRunner[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const r of runners.splice(0)) await r.stop();
});

function runnerWith(zygote: FakeZygote): ZygoteRunner {
  const r = newRunner(zygote, libc);
  runners.push(r);
  return r;
}

/** What fd names in this process ("socket:[ino]"), or null when it is closed. */
function fdTarget(fd: number): string | null {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return null;
  }
}

/** The program's end as the zygote would take it: a copy of the fd the frame names. */
function take(fd: number): Socket {
  const copy = libc.dupCloexec(fd);
  assert.ok(copy >= 0, `dup of ${fd}: errno ${libc.errno()}`);
  const s = new Socket({ fd: copy, readable: true, writable: true });
  sockets.push(s);
  return s;
}

const firstData = (s: NodeJS.ReadableStream): Promise<Buffer> => new Promise((resolve) => s.once('data', resolve));
const ended = (s: NodeJS.ReadableStream): Promise<void> => new Promise((resolve) => s.once('end', resolve));

test('a socket session: the frame names the program\'s end, closed at "started"; its bytes bypass the zygote', async () => {
  const zygote = new FakeZygote();
  const runner = runnerWith(zygote);
  const session = runner.open(upcall(4026532001, { builtin: 'netrelay', argv: [], socket: true, stdin: Buffer.from('first') }));
  await tick();
  const spawn = zygote.frames.find((f) => f.op === 'spawn')!;
  assert.equal(typeof spawn.stdioFd, 'number', 'the frame has flag socket and stdioFd');
  const named = fdTarget(spawn.stdioFd!);
  assert.match(named ?? '', /^socket:/, 'stdioFd is a socket the runner holds open');
  const program = take(spawn.stdioFd!);
  assert.equal((await firstData(program)).toString(), 'first', 'req.stdin went on the socket, not in the frame');
  session.stdin.write('more');
  assert.equal((await firstData(program)).toString(), 'more');
  program.write('reply');
  assert.equal((await firstData(session.stdout)).toString(), 'reply');
  assert.deepEqual(zygote.frames.map((f) => f.op), ['spawn'], 'no stdin frames: the bytes did not pass through the zygote');

  zygote.event({ id: spawn.id, event: 'started', pid: 1234 });
  await tick();
  assert.notEqual(fdTarget(spawn.stdioFd!), named, 'the runner\'s copy of the program\'s end is closed once the zygote has taken it');
  const programEnd = ended(program);
  const stdoutEnd = ended(session.stdout);
  session.stdout.resume();
  zygote.exit(spawn.id);
  await session.outcome;
  await stdoutEnd;
  await programEnd; // the runner's end is gone too
});

test('a socket session whose spawn fails: stdout errors with the code, the named fd is closed', async () => {
  const zygote = new FakeZygote();
  const runner = runnerWith(zygote);
  const session = runner.open(upcall(4026532001, { builtin: 'netrelay', argv: [], socket: true }));
  const failed = new Promise<string>((resolve) => session.stdout.once('error', (e: BrokerError) => resolve(e.code)));
  await tick();
  const spawn = zygote.frames.find((f) => f.op === 'spawn')!;
  const named = fdTarget(spawn.stdioFd!);
  zygote.event({ id: spawn.id, event: 'error', code: 'E_INIT_EXITED', native: 'E_INIT_EXITED', step: 'initPidfd', errno: 3, message: 'init exited' });
  assert.equal(await failed, 'E_INIT_EXITED');
  assert.notEqual(fdTarget(spawn.stdioFd!), named, 'closed at the final event');
});

test('stop() closes the named fd of a socket session that was never answered', async () => {
  const zygote = new FakeZygote();
  const runner = runnerWith(zygote);
  const session = runner.open(upcall(4026532001, { builtin: 'netrelay', argv: [], socket: true }));
  session.stdout.on('error', () => undefined);
  await tick();
  const spawn = zygote.frames.find((f) => f.op === 'spawn')!;
  const named = fdTarget(spawn.stdioFd!);
  assert.ok(named);
  await runner.stop();
  await session.outcome.catch(() => undefined);
  assert.notEqual(fdTarget(spawn.stdioFd!), named);
});
