/** The one length framer (src/common/frame.ts) and its users' bounds. */
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { BrokerError } from '../../src/common/errors.js';
import { encodeLengthFrame, FRAME_HEADER_BYTES, FrameLengthError, LengthFrameDecoder } from '../../src/common/frame.js';
import { FrameDecoder } from '../../src/server/framing.js';
import { RELAY_MAX_FILE, RelayTransport } from '../../src/upcall/dns/relay-transport.js';

const bodies = [Buffer.from('one'), Buffer.alloc(0), Buffer.alloc(300, 7), Buffer.from('last')];
const stream = Buffer.concat(bodies.map((b) => encodeLengthFrame(b)));

function header(len: number): Buffer {
  const h = Buffer.alloc(FRAME_HEADER_BYTES);
  h.writeUInt32BE(len, 0);
  return h;
}

test('encode: a big-endian length, then the body parts as given', () => {
  const f = encodeLengthFrame(Buffer.from('ab'), Buffer.from('cde'));
  assert.deepEqual(f, Buffer.concat([header(5), Buffer.from('abcde')]));
  assert.deepEqual(encodeLengthFrame(), header(0));
});

test('frames survive any split of the stream, and many frames in one chunk', () => {
  for (let step = 1; step <= stream.length; step++) {
    const d = new LengthFrameDecoder({ maxFrame: 1000 });
    const got: Buffer[] = [];
    for (let i = 0; i < stream.length; i += step) got.push(...d.push(stream.subarray(i, i + step)));
    assert.deepEqual(got, bodies, `split every ${step} bytes`);
    assert.equal(d.pending, 0);
  }
  const d = new LengthFrameDecoder({ maxFrame: 1000 });
  assert.deepEqual(d.push(stream), bodies, 'the whole stream in one chunk');
});

test('a frame split across many chunks is returned whole once, and what is unfinished stays pending', () => {
  const d = new LengthFrameDecoder({ maxFrame: 1 << 20 });
  const body = Buffer.alloc(200_000, 0x5a);
  const f = encodeLengthFrame(body);
  for (let i = 0; i < f.length - 1; i += 4096) assert.deepEqual(d.push(f.subarray(i, Math.min(i + 4096, f.length - 1))), []);
  assert.equal(d.pending, f.length - 1);
  const out = d.push(f.subarray(f.length - 1));
  assert.equal(out.length, 1);
  assert.ok(out[0]!.equals(body));
  assert.equal(d.pending, 0);
  assert.deepEqual(d.push(Buffer.alloc(0)), [], 'an empty chunk is nothing');
});

test('zero length: an empty frame by default; refused under minFrame', () => {
  assert.deepEqual(new LengthFrameDecoder({ maxFrame: 10 }).push(header(0)), [Buffer.alloc(0)]);
  const d = new LengthFrameDecoder({ maxFrame: 10, minFrame: 1, what: 'reply' });
  assert.throws(() => d.push(header(0)), (e: unknown) =>
    e instanceof FrameLengthError && e instanceof BrokerError && e.code === 'E_PROTOCOL' &&
    e.bound === 'min' && e.length === 0 && e.limit === 1 && e.message === 'reply of 0 bytes is under the minimum of 1');
});

test('an oversized length is refused from its header, before the body, and the buffer is dropped', () => {
  const d = new LengthFrameDecoder({ maxFrame: 100, what: 'thing' });
  assert.equal(d.push(encodeLengthFrame(Buffer.alloc(100))).length, 1, 'the limit itself is allowed');
  assert.deepEqual(d.push(header(101).subarray(0, 3)), [], 'a partial header decides nothing');
  assert.throws(() => d.push(header(101).subarray(3)), (e: unknown) =>
    e instanceof FrameLengthError && e.code === 'E_PROTOCOL' && e.bound === 'max' && e.length === 101 &&
    e.message === 'thing of 101 bytes is over the limit of 100' && (e.details as { limit: number }).limit === 100);
  assert.equal(d.pending, 0, 'what was buffered is dropped');
});

test("the server's decoder keeps its message and details", () => {
  assert.throws(() => new FrameDecoder(100).push(header(101)), (e: unknown) =>
    e instanceof BrokerError && e.code === 'E_PROTOCOL' && e.message === 'message of 101 bytes is over the limit of 100' &&
    JSON.stringify(e.details) === '{"limit":100}');
});

test('a relay reply of 0 bytes or over the largest file fails the relay (E_PROTOCOL) and what waits on it', async () => {
  for (const len of [0, RELAY_MAX_FILE + 2]) {
    const input = new PassThrough();
    const output = new PassThrough();
    const relay = new RelayTransport(input, output);
    const reply = relay.readFile('/etc/hosts');
    output.write(header(len));
    await assert.rejects(reply, (e: unknown) => e instanceof FrameLengthError && e.length === len);
    assert.equal(relay.settled, false);
    relay.close();
  }
});

test('relay replies split anywhere reach their requests in order', async () => {
  const input = new PassThrough();
  const output = new PassThrough();
  const relay = new RelayTransport(input, output);
  const a = relay.readFile('/a');
  const b = relay.readFile('/b');
  const replies = Buffer.concat([encodeLengthFrame(Buffer.from([0]), Buffer.from('A')), encodeLengthFrame(Buffer.from([2]))]);
  for (const byte of replies) output.write(Buffer.from([byte]));
  assert.deepEqual(await a, { ok: true, text: 'A' });
  assert.deepEqual(await b, { ok: false, errno: 'ENOENT' });
  assert.equal(relay.settled, true);
  const requests = new LengthFrameDecoder({ maxFrame: 4096 }).push(input.read() as Buffer);
  assert.deepEqual(requests.map((r) => r.toString()), ['F/a', 'F/b']);
  relay.close();
});
