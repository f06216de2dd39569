import { test } from 'node:test';
import { runCSelftest } from '../helpers/c-selftest.js';

// The zygote's wire (native-bindings/zygote/wire.c: request parsing, event framing) is tested
// in C, on its own (native-bindings/test/zygote-wire-selftest.c).
test('zygote wire selftest (spawn records parsed and refused, events framed: started and error records, exit JSON) passes', () => {
  runCSelftest('ub-zygote-wire-selftest', 160);
});
