import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BrokerError, errnoError, exitStatusFor, ErrorCodes } from '../../src/common/errors.js';

test('BrokerError round-trips through JSON with its code and details', () => {
  const e = new BrokerError('E_NS_NOT_OWNED', 'pid ns not owned', { pidns: 4026532000 });
  const back = BrokerError.fromJSON(JSON.parse(JSON.stringify(e)));
  assert.equal(back.code, 'E_NS_NOT_OWNED');
  assert.equal(back.message, 'pid ns not owned');
  assert.deepEqual(back.details, { pidns: 4026532000 });
});

test('unknown codes from the wire become E_INTERNAL, never a crash', () => {
  assert.equal(BrokerError.fromJSON({ code: 'E_MADE_UP', message: 'x' }).code, 'E_INTERNAL');
  assert.equal(BrokerError.fromJSON(null).code, 'E_INTERNAL');
});

test('errno is mapped to codes at the native boundary', () => {
  assert.equal(errnoError('pidfd_open', 3, 'process 1').code, 'E_NO_PROCESS');
  assert.equal(errnoError('setns', 1, 'x').code, 'E_PERMISSION');
  assert.equal(errnoError('ioctl', 25, 'x').code, 'E_NO_KERNEL_FEATURE');
  assert.equal(errnoError('ioctl', 3, 'x', 'E_INIT_EXITED').code, 'E_INIT_EXITED');
  assert.equal(errnoError('ioctl', 3, 'x').details['errnoName'], 'ESRCH');
  const nodeErr = Object.assign(new Error('nope'), { code: 'ENOENT' });
  assert.equal(BrokerError.from(nodeErr).code, 'E_NOT_FOUND');
});

test('every code has a distinct, non-zero exit status', () => {
  const statuses = Object.keys(ErrorCodes).map((c) => exitStatusFor(c as keyof typeof ErrorCodes));
  assert.equal(new Set(statuses).size, statuses.length);
  assert.ok(statuses.every((s) => s > 0 && s < 126));
});
