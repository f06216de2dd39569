/**
 * The broker's JSON log lines (src/logging/winston-logger-factory.ts): V8's JSON.stringify of winston's
 * info, keys in the order they were set; a line JSON.stringify refuses (a cycle, a BigInt) still goes out,
 * through winston's own json format.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { WinstonLoggerFactory } from '../../src/logging/winston-logger-factory.js';

async function lines(log: (f: WinstonLoggerFactory) => void): Promise<string[]> {
  const writes: string[] = [];
  const stream = new Writable({ decodeStrings: false, write(chunk: string, _e, done) { writes.push(String(chunk)); done(); } });
  const loggers = new WinstonLoggerFactory({ level: 'info', format: 'json', stream });
  log(loggers);
  await loggers.flush();
  await new Promise((resolve) => setImmediate(resolve));
  return writes.join('').split('\n').filter(Boolean);
}

test('an audit line: every field, the logger first, then the event\'s fields, level, message, timestamp', async () => {
  const [line] = await lines((f) => f.get('test:X').audit('upcall', { kind: 'dns', status: 0, error: { code: 'E_X' }, skipped: undefined, at: new Date(0) }));
  const keys = Object.keys(JSON.parse(line!) as object);
  assert.deepEqual(keys, ['logger', 'kind', 'status', 'error', 'at', 'audit', 'level', 'message', 'timestamp']);
  assert.match(line!, /^\{"logger":"test:X","kind":"dns","status":0,"error":\{"code":"E_X"\},"at":"1970-01-01T00:00:00.000Z","audit":true,"level":"info","message":"upcall","timestamp":"[^"]+"\}$/);
});

test('a cycle or a BigInt in the metadata: the line is still written (winston\'s json format)', async () => {
  const cycle: Record<string, unknown> = { a: 1 };
  cycle.self = cycle;
  const out = await lines((f) => {
    f.get('test:X').info('with a cycle', { cycle });
    f.get('test:X').warn('with a bigint', { n: 10n });
    f.get('test:X').info('after them');
  });
  assert.equal(out.length, 3);
  const [a, b, c] = out.map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(a!.cycle, { a: 1, self: '[Circular]' });
  assert.equal(a!.message, 'with a cycle');
  assert.equal(b!.n, '10');
  assert.equal(b!.level, 'warn');
  assert.equal(c!.message, 'after them');
});
