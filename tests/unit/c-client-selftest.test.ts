import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { DEFAULT_NATIVE_DIR } from '../../src/common/paths.js';

// The C client's JSON scanner and framing are tested in C (native-bindings/test/ub-client-selftest.c);
// this runs that program and fails with its own report.
test('C client selftest (JSON scanner, framing, timeouts) passes', () => {
  const r = spawnSync(join(DEFAULT_NATIVE_DIR, 'ub-client-selftest'), [], { encoding: 'utf8', timeout: 60_000 });
  const last = r.stdout.trim().split('\n').at(-1) ?? '';
  assert.equal(r.status, 0, `${last}\n${r.stdout.split('\n').filter((l) => /FAIL/.test(l)).join('\n')}\n${r.stderr}`);
  const m = /^(\d+) passed, (\d+) failed$/.exec(last);
  assert.ok(m, `unexpected last line: ${last}`);
  assert.equal(Number(m[2]), 0);
  assert.ok(Number(m[1]) > 100, 'the selftest ran its cases');
});
