import assert from 'node:assert/strict';
import { test } from 'node:test';
import { K } from '../../src/ns/kernel-constants.js';
import { assertMirror, headerDefines } from '../helpers/c-header.js';

// The C header and the TypeScript mirror must say the same thing (STYLE.md: no
// constants copied by hand between languages without a check).
test('native-bindings/include/ub-kernel.h and src/ns/kernel-constants.ts agree', () => {
  const fromHeader = headerDefines('ub-kernel.h', 'UB_');
  assert.ok(fromHeader.size >= 30, `parsed only ${fromHeader.size} constants from the header`);
  assertMirror('ub-kernel.h', fromHeader, K);
});
