import assert from 'node:assert/strict';
import { test } from 'node:test';
import { W } from '../../src/common/wire-constants.js';
import { assertMirror, headerDefines } from '../helpers/c-header.js';

// The broker and its native programs share limits, exit statuses, the socket
// path and the zygote's message names: one C header, one TypeScript mirror.
test('native-bindings/include/ub-wire.h and src/common/wire-constants.ts agree', () => {
  const fromHeader = headerDefines('ub-wire.h', 'UB_');
  assert.ok(fromHeader.size >= 20, `parsed only ${fromHeader.size} constants from the header`);
  assertMirror('ub-wire.h', fromHeader, W);
});
