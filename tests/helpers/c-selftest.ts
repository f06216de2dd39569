/**
 * Runs one of the C selftests built from native-bindings/test/ (they share
 * test/selftest.h: "FAIL ..." lines, then "N passed, N failed") and fails
 * with its own report.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { DEFAULT_NATIVE_DIR } from '../../src/common/paths.js';

/** Runs build/Release/<program>; at least `minPassed` checks must have run, none failed. */
export function runCSelftest(program: string, minPassed: number, timeoutMs = 60_000): void {
  const r = spawnSync(join(DEFAULT_NATIVE_DIR, program), [], { encoding: 'utf8', timeout: timeoutMs });
  const last = r.stdout.trim().split('\n').at(-1) ?? '';
  assert.equal(r.status, 0, `${last}\n${r.stdout.split('\n').filter((l) => /FAIL/.test(l)).join('\n')}\n${r.stderr}`);
  const m = /^(\d+) passed, (\d+) failed$/.exec(last);
  assert.ok(m, `unexpected last line: ${last}`);
  assert.equal(Number(m[2]), 0);
  assert.ok(Number(m[1]) >= minPassed, `the selftest ran only ${m[1]} checks`);
}
