import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BrokerError } from '../../src/common/errors.js';
import { encodeFrame, FrameDecoder, JsonText } from '../../src/server/framing.js';
import { okResponse, parseRequest } from '../../src/server/protocol.js';

test('frames survive arbitrary splitting', () => {
  const bytes = Buffer.concat([encodeFrame({ a: 1 }), encodeFrame({ b: 'two' }), encodeFrame([3])]);
  for (let step = 1; step <= bytes.length; step++) {
    const d = new FrameDecoder();
    const got: unknown[] = [];
    for (let i = 0; i < bytes.length; i += step) {
      for (const f of d.push(bytes.subarray(i, i + step))) got.push(JSON.parse(f.toString()));
    }
    assert.deepEqual(got, [{ a: 1 }, { b: 'two' }, [3]], `split every ${step} bytes`);
    assert.equal(d.pending, 0);
  }
});

test('an oversized length is refused before the body arrives', () => {
  const d = new FrameDecoder(100);
  const header = Buffer.alloc(4);
  header.writeUInt32BE(101);
  assert.throws(() => d.push(header), (e: unknown) => e instanceof BrokerError && e.code === 'E_PROTOCOL');
});

test('a half-written message stays pending', () => {
  const d = new FrameDecoder();
  const f = encodeFrame({ op: 'ping' });
  assert.deepEqual(d.push(f.subarray(0, f.length - 1)), []);
  assert.equal(d.pending, f.length - 1);
});

test('requests are validated and keep their id when they can', () => {
  const ok = parseRequest(Buffer.from(JSON.stringify({ v: 1, id: 7, op: 'ping' })));
  assert.equal(ok.request?.op, 'ping');
  const badJson = parseRequest(Buffer.from('{not json'));
  assert.equal(badJson.error?.code, 'E_BAD_REQUEST');
  assert.equal(badJson.id, null);
  const badVersion = parseRequest(Buffer.from(JSON.stringify({ v: 2, id: 'x', op: 'ping' })));
  assert.equal(badVersion.error?.code, 'E_BAD_REQUEST');
  assert.equal(badVersion.id, 'x');
  const extra = parseRequest(Buffer.from(JSON.stringify({ v: 1, id: 1, op: 'ping', actAs: 1 })));
  assert.equal(extra.error?.code, 'E_BAD_REQUEST', 'unknown envelope fields are refused');
});

test('a result given as JSON text is framed as if it had been serialised with the rest', () => {
  const result = [{ id: 'r-000000000001', n: 1 }, { id: 'r-000000000002', n: 'two "quoted"' }];
  for (const response of [okResponse(7, result), okResponse(null, result)]) {
    const framed = new FrameDecoder(1 << 20).push(encodeFrame({ ...response, result: new JsonText(JSON.stringify(result)) }));
    assert.equal(framed.length, 1);
    assert.deepEqual(JSON.parse(framed[0]!.toString('utf8')), JSON.parse(JSON.stringify(response)));
  }
  const bare = new FrameDecoder(1 << 20).push(encodeFrame({ result: new JsonText('[]') }));
  assert.deepEqual(JSON.parse(bare[0]!.toString('utf8')), { result: [] });
});
