/**
 * The broker's log lines are written once per turn of the event loop (TurnBatchedStream in
 * src/logging/winston-logger-factory.ts): nothing reaches the target during the turn that logged, then
 * all of the turn's lines arrive in one write, in order; ending the logger writes what is pending.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { TurnBatchedStream, WinstonLoggerFactory } from '../../src/logging/winston-logger-factory.js';

function sink(): { stream: Writable; writes: string[] } {
  const writes: string[] = [];
  const stream = new Writable({ decodeStrings: false, write(chunk: string, _e, done) { writes.push(String(chunk)); done(); } });
  return { stream, writes };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

test('lines of one turn arrive in one write after the turn, in order; the next turn is another write', async () => {
  const { stream, writes } = sink();
  const b = new TurnBatchedStream(stream);
  b.write('a\n');
  b.write('b\n');
  assert.deepEqual(writes, [], 'nothing during the turn that wrote');
  await turn();
  assert.deepEqual(writes, ['a\nb\n']);
  b.write('c\n');
  await turn();
  assert.deepEqual(writes, ['a\nb\n', 'c\n']);
});

test('a logger\'s audit line reaches its stream after the turn, and flush() writes what is pending', async () => {
  const { stream, writes } = sink();
  const loggers = new WinstonLoggerFactory({ level: 'info', format: 'json', stream });
  loggers.get('test:X').audit('request-key', { route: 'netns-context' });
  loggers.get('test:X').debug('below the level');
  await turn();
  await turn();
  assert.equal(writes.length, 1);
  const line = JSON.parse(writes[0]!) as Record<string, unknown>;
  assert.equal(line.message, 'request-key');
  assert.equal(line.route, 'netns-context');
  assert.equal(line.audit, true);
  loggers.get('test:X').warn('last words');
  await loggers.flush();
  await turn();
  assert.match(writes.join(''), /"message":"last words"/);
});
