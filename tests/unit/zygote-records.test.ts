/**
 * The spawn record as the broker encodes it (the zygote's parser is tested in
 * native-bindings/test/zygote-wire-selftest.c), and the zygote's binary
 * started and error records (native-bindings/include/ub-wire.h),
 * decoded by decodeZygoteEvent into the ZygoteEvent objects the runner
 * handles: what the zygote writes round-trips, and a record whose lengths or
 * fields are wrong is refused, and the runner then kills the zygote as for
 * any unreadable output. The C side's encoding: native-bindings/test/zygote-wire-selftest.c.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeLengthFrame } from '../../src/common/frame.js';
import { W } from '../../src/common/wire-constants.js';
import { decodeZygoteEvent, encodeZygoteError, encodeZygoteFrame, encodeZygoteStarted, ZygoteRecordError } from '../../src/upcall/zygote-protocol.js';
import { FakeZygote, runnerWith, tick, upcall } from '../helpers/fake-zygote.js';

/** The body of a frame (its 4-byte length dropped). */
const body = (frame: Buffer): Buffer => frame.subarray(W.UB_FRAME_HEADER);
const refused = (b: Buffer, what: RegExp) => assert.throws(() => decodeZygoteEvent(b), (e: unknown) => e instanceof ZygoteRecordError && e.code === 'E_PROTOCOL' && what.test(e.message));

test('a started record decodes to the started event; start time 0 is unknown', () => {
  assert.deepEqual(decodeZygoteEvent(body(encodeZygoteStarted(7, 4242, 1, 123456789012n))), { id: 7, event: 'started', pid: 4242, ppid: 1, startTime: '123456789012' });
  assert.deepEqual(decodeZygoteEvent(body(encodeZygoteStarted(2 ** 53 - 1, 5, 0, 0n))), { id: 2 ** 53 - 1, event: 'started', pid: 5, ppid: 0 });
});

test('an error record decodes to the error event, with or without an id, raw strings and a negative errno', () => {
  const e = { id: 9, code: 'E_NOT_FOUND', native: 'E_EXEC', step: 'execve("/x")\n', errno: 2, message: 'h\u00e9 \t' };
  assert.deepEqual(decodeZygoteEvent(body(encodeZygoteError(e))), { ...e, event: 'error' });
  assert.deepEqual(decodeZygoteEvent(body(encodeZygoteError({ id: null, code: 'E_BAD_REQUEST', step: 'read frame', errno: -90, message: '' }))),
    { id: null, event: 'error', code: 'E_BAD_REQUEST', native: 'E_BAD_REQUEST', step: 'read frame', errno: -90, message: '' });
});

test('the exit event stays JSON', () => {
  const exit = { id: 3, event: 'exit', code: 0, signal: null, stdoutBase64: '', stderrBase64: '', truncated: false, timedOut: false, fields: {} };
  assert.deepEqual(decodeZygoteEvent(Buffer.from(JSON.stringify(exit))), exit);
  assert.equal(decodeZygoteEvent(Buffer.from('{"id":3,"event":"exit"}')), null, 'JSON off the schema: null (logged, not fatal)');
});

test('started records of the wrong length or with impossible fields are refused', () => {
  const good = body(encodeZygoteStarted(1, 2, 3, 4n));
  refused(good.subarray(0, 1), /started record of 1 bytes/);
  refused(good.subarray(0, W.UB_ZYGOTE_STARTED_LEN - 1), /started record of 24 bytes/);
  refused(Buffer.concat([good, Buffer.from([0])]), /started record of 26 bytes/);
  refused(body(encodeZygoteStarted(1, 0, 1, 4n)), /pid 0/);
  refused(body(encodeZygoteStarted(1, 0x8000_0000, 1, 4n)), /pid 2147483648/);
  const bigId = Buffer.from(good);
  bigId.writeBigUInt64BE(2n ** 53n, 1);
  refused(bigId, /over 2\^53/);
});

test('error records that are short, whose string lengths run past the record, or that have bytes after it are refused', () => {
  const good = body(encodeZygoteError({ id: 1, code: 'E_SPAWN', step: 'x', errno: 0, message: 'm' }));
  refused(good.subarray(0, W.UB_ZYGOTE_ERROR_HEADER - 1), /shorter than its header/);
  refused(good.subarray(0, W.UB_ZYGOTE_ERROR_HEADER), /ends before string 1/);
  refused(good.subarray(0, good.length - 1), /string 4 of 1 bytes runs past/);
  refused(Buffer.concat([good, Buffer.from([0])]), /1 bytes after the error record/);
  const long = Buffer.from(good);
  long.writeUInt16BE(0xffff, W.UB_ZYGOTE_ERROR_HEADER);
  refused(long, /string 1 of 65535 bytes/);
  const overMax = body(encodeZygoteError({ id: 1, code: 'E_SPAWN', step: 'x'.repeat(W.UB_ZYGOTE_ERROR_MAX_STRING + 1), errno: 0, message: '' }));
  refused(overMax, /string 3 of 1025 bytes/);
  const flags = Buffer.from(good);
  flags[9] = 2;
  refused(flags, /flags 2/);
});

test('a malformed record from the zygote kills it, and its requests fail E_SPAWN', { timeout: 60_000 }, async () => {
  const zygote = new FakeZygote();
  const runner = runnerWith(zygote);
  let killed = 0;
  const kill = zygote.kill.bind(zygote);
  zygote.kill = () => {
    killed++;
    return kill();
  };
  const outcome = runner.run(upcall(1)).then(() => 'ok', (e: { code: string }) => e.code);
  await tick();
  const started = body(encodeZygoteStarted(zygote.sent[0]!.id, 1234, 1, 0n));
  zygote.stdout.write(encodeLengthFrame(started.subarray(0, W.UB_ZYGOTE_STARTED_LEN - 4)));
  assert.equal(await outcome, 'E_SPAWN');
  assert.equal(killed, 1, 'the zygote was killed');
  await runner.stop();
});

test('the spawn record: the fixed header, then argv, env (only when given), cwd and stdin, each length-prefixed', () => {
  const base = { id: 5, initPidfd: 31, initPid: 41210, initStartTime: 1234567, pidns: 4026532181, host: false, argv: ['/bin/echo', 'h\u00e9'], timeoutMs: 5000, outputCap: 65536 };
  const b = body(encodeZygoteFrame({ ...base, mode: 'exec', env: { PATH: '/bin' }, cwd: '/', stdin: Buffer.from([0, 1]) }));
  assert.equal(b[0], W.UB_ZYGOTE_FRAME_SPAWN);
  assert.deepEqual([Number(b.readBigUInt64BE(1)), b[9], b[10], b.readUInt32BE(11), b.readUInt32BE(15), b.readUInt32BE(19), b.readUInt32BE(23)],
    [5, W.UB_ZYGOTE_MODE_EXEC, W.UB_ZYGOTE_SPAWN_ENV, 5000, 65536, 31, 41210]);
  assert.deepEqual([b.readBigUInt64BE(27), b.readBigUInt64BE(35), b.readUInt32BE(43)], [1234567n, 4026532181n, 0], 'stdioFd 0: no socket');
  const tail = Buffer.concat([
    Buffer.from([0, 2]), Buffer.from([0, 0, 0, 9]), Buffer.from('/bin/echo'), Buffer.from([0, 0, 0, 3]), Buffer.from('h\u00e9'),
    Buffer.from([0, 1]), Buffer.from([0, 0, 0, 9]), Buffer.from('PATH=/bin'),
    Buffer.from([0, 0, 0, 1]), Buffer.from('/'),
    Buffer.from([0, 0, 0, 2, 0, 1]),
  ]);
  assert.deepEqual(b.subarray(W.UB_ZYGOTE_SPAWN_HEADER), tail);
  const relay = body(encodeZygoteFrame({ ...base, host: true, mode: 'builtin', builtin: 'netrelay', argv: [], stream: true, startedEvent: false }));
  assert.equal(relay[9], W.UB_ZYGOTE_MODE_NETRELAY);
  assert.equal(relay[10], W.UB_ZYGOTE_SPAWN_HOST | W.UB_ZYGOTE_SPAWN_STREAM | W.UB_ZYGOTE_SPAWN_NO_STARTED);
  assert.deepEqual(relay.subarray(W.UB_ZYGOTE_SPAWN_HEADER), Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 'no argv, no env, no cwd, no stdin');
  const socket = body(encodeZygoteFrame({ ...base, mode: 'builtin', builtin: 'netrelay', argv: [], stdioFd: 27 }));
  assert.equal(socket[10], W.UB_ZYGOTE_SPAWN_SOCKET, 'flag socket, not stream');
  assert.equal(socket.readUInt32BE(43), 27, 'stdioFd: the broker\'s fd number of the socket');
  assert.throws(() => encodeZygoteFrame({ ...base, mode: 'builtin', builtin: 'sh' }), (e: unknown) => (e as { code?: string }).code === 'E_BAD_REQUEST');
});
