import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BrokerError } from '../../src/common/errors.js';
import { encodeFrame, encodeFrameParts, FrameDecoder, JsonText, releaseFrame } from '../../src/server/framing.js';
import { CHUNK_BYTES, JsonChunkWriter, POOL_CHUNKS, pooledChunks } from '../../src/server/json-chunks.js';
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

test('a result in pieces: the frame is the same bytes as the whole text, the pieces are not copied, release runs once', () => {
  const result = Array.from({ length: 40 }, (_, i) => ({ id: `r-${String(i).padStart(12, '0')}`, path: `/mnt/ü${i}` }));
  const text = JSON.stringify(result);
  const pieces = [text.slice(0, 7), text.slice(7, 300), text.slice(300)].map((t) => Buffer.from(t, 'utf8'));
  let released = 0;
  const json = new JsonText(pieces, () => released++);
  const response = okResponse(3, json);
  const parts = encodeFrameParts(response);
  assert.equal(parts.length, pieces.length + 2, 'header with envelope, the pieces, the closing brace');
  for (const p of pieces) assert.ok(parts.includes(p), 'each piece is written as it is');
  assert.deepEqual(Buffer.concat(parts), encodeFrame(okResponse(3, result)));
  releaseFrame(response);
  releaseFrame(response);
  assert.equal(released, 1);
  releaseFrame(okResponse(4, [1]));
  releaseFrame(null);
});

test('JsonChunkWriter: pieces across chunk boundaries, one larger than a chunk, non-ASCII; chunks come back to the pool', () => {
  const writer = new JsonChunkWriter();
  const pieces: string[] = ['['];
  for (let i = 0; i < 3000; i++) pieces.push(`${i > 0 ? ',' : ''}${JSON.stringify({ i, s: 'é'.repeat(i % 7), pad: 'x'.repeat(i % 113) })}`);
  pieces.push(`,${JSON.stringify('ł'.repeat(CHUNK_BYTES))}`, ']');
  for (const p of pieces) writer.write(p);
  const pooledBefore = pooledChunks();
  const json = writer.finish();
  const whole = pieces.join('');
  assert.equal(json.byteLength, Buffer.byteLength(whole));
  assert.equal(Buffer.concat(json.parts).toString('utf8'), whole);
  assert.ok(json.parts.length > 3, 'more than one chunk');
  assert.ok(json.parts.every((p) => p.length <= 2 * CHUNK_BYTES + 4));
  json.release();
  assert.ok(pooledChunks() > pooledBefore, 'its chunks are pooled again');
  assert.ok(pooledChunks() <= POOL_CHUNKS);
  // A second answer reuses them and is not disturbed by the first one's release.
  const again = new JsonChunkWriter();
  again.write('[1,2,3]');
  const second = again.finish();
  assert.equal(Buffer.concat(second.parts).toString(), '[1,2,3]');
  second.release();
});
