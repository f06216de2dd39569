import { test } from 'node:test';
import { runCSelftest } from '../helpers/c-selftest.js';

// The C client's JSON scanner and framing are tested in C (native-bindings/test/ub-client-selftest.c);
// this runs that program and fails with its own report.
test('C client selftest (JSON scanner, framing, timeouts) passes', () => {
  runCSelftest('ub-client-selftest', 101);
});
