/**
 * The zygote's wire, on the real zygote (build/Release/upcall-zygote), as root.
 *
 * Init's pidfd. The zygote finds init by the pidfd the broker hands it, never by number:
 * the spawn frame names the broker's fd (initPidfd) and the zygote takes it
 * with pidfd_getfd(2) from its parent (here: this test process). Runs as
 * root, on the real zygote (build/Release/upcall-zygote).
 *
 * - a live init's pidfd: the upcall runs;
 * - the same pidfd once that process has exited: E_INIT_EXITED, although the
 *   frame is otherwise the one that just worked;
 * - a pid reuse cannot redirect: a frame naming a live process's pid and
 *   start time, but an exited process's pidfd, is refused (E_INIT_EXITED),
 *   and one whose pidfd names another live process than initPid is refused
 *   (E_BAD_REQUEST): the upcall never runs in the process the number names;
 * - an fd that is not a pidfd, or not open in the broker: E_BAD_REQUEST.
 *
 * Control records (kind byte and request id, nothing after): eof ends a stream
 * request's stdin, kill kills its tree; one with bytes after the header is
 * refused and the zygote goes on.
 *
 * A socket request (flag socket, stdioFd): the broker's socket, taken as the
 * init pidfd is, is the program's stdin and stdout; nothing of it passes
 * through the zygote, which closes its copy at the end; an fd that is not a
 * socket is refused.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { openSync, closeSync, readFileSync, readlinkSync } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { defaultConfig } from '../../src/common/defaults.js';
import { W } from '../../src/common/wire-constants.js';
import { Pidfd } from '../../src/ns/pidfd.js';
import { decodeZygoteEvent, encodeZygoteControl, encodeZygoteData, encodeZygoteFrame } from '../../src/upcall/zygote-protocol.js';
import { realLibc } from '../helpers/native.js';
import { until } from '../helpers/until.js';

const ZYGOTE = join(defaultConfig().nativeDir, 'upcall-zygote');

function startTime(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
}

type Event = Record<string, unknown>;
const z = spawn(ZYGOTE, [], { stdio: ['pipe', 'pipe', 'inherit'] });
const events = new Map<number, Event>();
/** Errors without an id (frames the zygote could not read), in order. */
const unread: Event[] = [];
/** Requests reported started. */
const started = new Set<number>();
/** What stream requests wrote, from stdout data frames. */
const streamed = new Map<number, string>();
let buf = Buffer.alloc(0);
z.stdout!.on('data', (d: Buffer) => {
  buf = Buffer.concat([buf, d]);
  while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
    const body = buf.subarray(4, 4 + buf.readUInt32BE(0));
    buf = buf.subarray(4 + buf.readUInt32BE(0));
    if (body[0] === W.UB_ZYGOTE_FRAME_STDOUT) {
      const id = Number(body.readBigUInt64BE(1));
      streamed.set(id, (streamed.get(id) ?? '') + body.subarray(W.UB_ZYGOTE_DATA_HEADER).toString());
      continue;
    }
    const ev = decodeZygoteEvent(body) as unknown as Event; // started and error: binary records; exit: JSON
    if (ev['id'] === null) unread.push(ev);
    else if (ev['event'] === 'started') started.add(Number(ev['id']));
    else if (ev['event'] === 'exit' || ev['event'] === 'error') events.set(Number(ev['id']), ev);
  }
});

const children: ChildProcess[] = [];
const pidfds: Pidfd[] = [];
after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const p of pidfds) p.close();
  z.stdin!.end();
  if (z.exitCode === null && z.signalCode === null) await once(z, 'close');
});

/** A live process standing in for an init (host: run in our own namespaces), and its pidfd. */
function fakeInit(): { child: ChildProcess; pid: number; pidfd: Pidfd } {
  const child = spawn('sleep', ['3600'], { stdio: 'ignore' });
  children.push(child);
  const pidfd = Pidfd.open(realLibc(), child.pid!);
  pidfds.push(pidfd);
  return { child, pid: child.pid!, pidfd };
}

async function exited(c: ChildProcess): Promise<void> {
  c.kill('SIGKILL');
  if (c.exitCode === null && c.signalCode === null) await once(c, 'exit');
}

let nextId = 1;
const pidns = Number(/\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))![1]);
/** Send a spawn request (host context) and return its id. */
function send(initPidfd: number, initPid: number, argv: string[], more: { stream?: boolean; stdioFd?: number } = {}): number {
  const id = nextId++;
  z.stdin!.write(encodeZygoteFrame({
    id, initPidfd, initPid, initStartTime: startTime(initPid), pidns, host: true,
    mode: 'exec', argv, timeoutMs: 20_000, outputCap: 100, ...more,
  }));
  return id;
}
async function answer(id: number): Promise<Event> {
  await until(`an answer to request ${id}`, () => events.has(id), 30_000);
  return events.get(id)!;
}
const ask = (initPidfd: number, initPid: number, marker: string): Promise<Event> => answer(send(initPidfd, initPid, ['echo', marker]));
const summary = (ev: Event) => [ev['event'], ev['event'] === 'exit' ? Buffer.from(String(ev['stdoutBase64']), 'base64').toString() : ev['code']];

test('a live init\'s pidfd: the upcall runs; the same pidfd after that process exited: E_INIT_EXITED', async () => {
  const a = fakeInit();
  assert.deepEqual(summary(await ask(a.pidfd.fd, a.pid, 'ran')), ['exit', 'ran\n']);
  const start = startTime(a.pid);
  await exited(a.child);
  const ev = await ask(a.pidfd.fd, 1, 'must not run'); // initPid 1 (alive): the number is not what finds init
  assert.deepEqual(summary(ev), ['error', 'E_INIT_EXITED'], String(ev['message']));
  assert.equal(ev['step'], 'initPidfd');
  assert.ok(start > 0);
});

test('a pid reuse cannot redirect: a live pid with an exited pidfd is refused, and so is a pidfd of another live process', async () => {
  const gone = fakeInit();
  await exited(gone.child);
  const live = fakeInit(); // may even have reused gone's pid: only the pidfd counts
  const refused = await ask(gone.pidfd.fd, live.pid, 'must not run');
  assert.deepEqual(summary(refused), ['error', 'E_INIT_EXITED'], String(refused['message']));
  const other = fakeInit();
  const mismatch = await ask(other.pidfd.fd, live.pid, 'must not run');
  assert.deepEqual(summary(mismatch), ['error', 'E_BAD_REQUEST']);
  assert.match(String(mismatch['message']), new RegExp(`names pid ${other.pid}, not initPid ${live.pid}`));
  assert.deepEqual(summary(await ask(live.pidfd.fd, live.pid, 'still fine')), ['exit', 'still fine\n'], 'the zygote serves the next request');
});

test('an fd that is not a pidfd, or that the broker does not have open: E_BAD_REQUEST', async () => {
  const a = fakeInit();
  const devnull = openSync('/dev/null', 'r');
  try {
    const notPidfd = await ask(devnull, a.pid, 'must not run');
    assert.deepEqual(summary(notPidfd), ['error', 'E_BAD_REQUEST']);
    assert.match(String(notPidfd['message']), /is not a pidfd/);
  } finally {
    closeSync(devnull);
  }
  const notOpen = await ask(65_000, a.pid, 'must not run');
  assert.deepEqual(summary(notOpen), ['error', 'E_BAD_REQUEST']);
  assert.match(String(notOpen['message']), /pidfd_getfd\(broker, 65000\): Bad file descriptor/);
});

test('control records: eof ends a stream request\'s stdin, kill kills a request; a malformed one is refused and the zygote goes on', async () => {
  const init = fakeInit();
  const cat = send(init.pidfd.fd, init.pid, ['cat'], { stream: true });
  z.stdin!.write(encodeZygoteData(W.UB_ZYGOTE_FRAME_STDIN, cat, Buffer.from('raw bytes\n')));
  await until('cat to echo its input', () => streamed.get(cat) === 'raw bytes\n', 30_000);
  assert.equal(events.has(cat), false, 'cat runs until its stdin ends');
  z.stdin!.write(encodeZygoteControl(W.UB_ZYGOTE_FRAME_EOF, cat));
  const catExit = await answer(cat);
  assert.deepEqual([catExit['event'], catExit['code'], catExit['signal']], ['exit', 0, null]);

  const sleeper = send(init.pidfd.fd, init.pid, ['sleep', '30']);
  await until('sleep to start', () => started.has(sleeper), 30_000);
  const bad = Buffer.concat([encodeZygoteControl(W.UB_ZYGOTE_FRAME_KILL, sleeper), Buffer.from('x')]);
  bad.writeUInt32BE(bad.length - 4, 0); // a kill record with one byte after its header
  z.stdin!.write(bad);
  await until('the malformed record to be refused', () => unread.length > 0, 30_000);
  assert.equal(unread[0]!['code'], 'E_BAD_REQUEST');
  assert.match(String(unread[0]!['message']), /9-byte header alone/);
  assert.equal(events.has(sleeper), false, 'the malformed kill did not kill');
  z.stdin!.write(encodeZygoteControl(W.UB_ZYGOTE_FRAME_KILL, sleeper));
  const killed = await answer(sleeper);
  assert.deepEqual([killed['event'], killed['code'], killed['signal'], killed['timedOut']], ['exit', null, 'SIGKILL', false]);
});

test('a socket request: the broker\'s socket is the program\'s stdin and stdout, past the zygote; not a socket: E_BAD_REQUEST', async () => {
  const init = fakeInit();
  const libc = realLibc();
  const sv = Buffer.alloc(8);
  assert.equal(libc.unixStreamPair(sv), 0, `socketpair: errno ${libc.errno()}`);
  const [mine, theirs] = new Int32Array(sv.buffer, sv.byteOffset, 2) as unknown as [number, number];
  const sock = new Socket({ fd: mine, readable: true, writable: true });
  let theirsOpen = true;
  try {
    let got = '';
    sock.on('data', (d: Buffer) => (got += d.toString()));
    const ended = once(sock, 'end');
    const id = send(init.pidfd.fd, init.pid, ['sh', '-c', 'readlink /proc/self/fd/0 /proc/self/fd/1; exec cat'], { stdioFd: theirs });
    await until('the socket request to start', () => started.has(id) || events.has(id), 30_000);
    closeSync(theirs); // the zygote has its copy (as the broker closes its own at "started")
    theirsOpen = false;
    sock.write('through the socket\n');
    await until('cat to echo on the socket', () => got.endsWith('through the socket\n'), 30_000);
    const [fd0, fd1] = got.split('\n');
    assert.match(fd0!, /^socket:\[\d+\]$/, 'stdin is the socket');
    assert.equal(fd1, fd0, 'stdout is the same socket');
    sock.end(); // cat reads EOF
    const ev = await answer(id);
    assert.deepEqual([ev['event'], ev['code'], ev['stdoutBase64']], ['exit', 0, ''], 'stdout went on the socket, none in the event');
    assert.equal(streamed.has(id), false, 'no stdout data frames');
    await ended; // every copy of the program's end is closed: the zygote's went with the final event
  } finally {
    sock.destroy();
    if (theirsOpen) closeSync(theirs);
  }
  const devnull = openSync('/dev/null', 'r');
  try {
    const ev = await answer(send(init.pidfd.fd, init.pid, ['true'], { stdioFd: devnull }));
    assert.deepEqual([ev['event'], ev['code'], ev['step']], ['error', 'E_BAD_REQUEST', 'stdioFd']);
    assert.match(String(ev['message']), /non-socket/);
  } finally {
    closeSync(devnull);
  }
});
