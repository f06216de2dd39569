/**
 * The server's own bounds (issue 16, findings 1 and 2), without a socket:
 * error answers never echo the caller's input at length, and host root on the
 * admin socket has a pool of its own that tenants cannot fill.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BrokerError } from '../../src/common/errors.js';
import { Admission, DEFAULT_LIMITS } from '../../src/server/limits.js';
import { errorResponse, MAX_ERROR_DETAILS, MAX_ERROR_MESSAGE, parseRequest } from '../../src/server/protocol.js';

test('an error answer quotes at most 256 characters of the caller\'s input, and drops long details', () => {
  const path = `/${'x'.repeat(4095)}`;
  const r = errorResponse(7, new BrokerError('E_NOT_FOUND', `no registration matches ${JSON.stringify({ path })}`, { path }));
  assert.equal(r.ok, false);
  if (r.ok) return;
  assert.ok(r.error.message.length <= MAX_ERROR_MESSAGE, `${r.error.message.length} characters`);
  assert.deepEqual(r.error.details, { truncated: true });
  assert.ok(JSON.stringify(r).length < MAX_ERROR_MESSAGE + MAX_ERROR_DETAILS);
  // An unknown envelope key of 60 KiB: the answer stays small.
  const { error } = parseRequest(Buffer.from(`{"v":1,"id":1,"op":"ping","${'k'.repeat(60_000)}":1}`));
  assert.ok(JSON.stringify(errorResponse(1, error)).length < 2048);
});

test('tenants holding every connection and request slot do not lock host root out, nor it them', () => {
  const limits = { ...DEFAULT_LIMITS, globalConnections: 4, globalInFlight: 4, tenantConnections: 2, tenantInFlight: 2 };
  const admission = new Admission(limits, new Set(['admin']));
  for (const t of ['a', 'a', 'b', 'b']) admission.connect(t);
  assert.throws(() => admission.connect('c'), { code: 'E_BUSY' });
  for (const t of ['a', 'a', 'b', 'b']) admission.admit(t);
  assert.throws(() => admission.admit('c'), { code: 'E_BUSY' });
  for (let i = 0; i < 4; i++) admission.connect('admin');
  assert.throws(() => admission.connect('admin'), { code: 'E_BUSY' }, 'host root is held to the global limit in its own pool');
  const releases = [0, 1, 2, 3].map(() => admission.admit('admin'));
  assert.throws(() => admission.admit('admin'), { code: 'E_BUSY' });
  releases[0]!();
  releases[0]!(); // idempotent
  admission.admit('admin');
  assert.throws(() => admission.admit('admin'), { code: 'E_BUSY' });
});
